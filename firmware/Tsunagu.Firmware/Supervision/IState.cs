namespace Tsunagu.Firmware.Supervision;

/// <summary>One state of the supervisor: does its work and says how it went. Must honour cancellation.</summary>
public interface IState
{
    StateId Id { get; }
    Task<Outcome> EnterAsync(SupervisorContext context, CancellationToken cancellationToken);
}
