using Tsunagu.Protocol;

namespace Tsunagu.Hal.Simulated;

/// <summary>The data partition as a directory; formatting deletes it.</summary>
public sealed class DirectoryDataPartition(string root) : IDataPartition
{
    public string Root { get; } = root;

    public Task EnsureReadyAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Root);
        return Task.CompletedTask;
    }

    public Task FormatAsync(CancellationToken cancellationToken)
    {
        if (Directory.Exists(Root))
        {
            Directory.Delete(Root, recursive: true);
        }
        Directory.CreateDirectory(Root);
        return Task.CompletedTask;
    }
}

public sealed class SimulatedSystemLoad : ISystemLoad
{
    public double Cpu { get; set; } = 0.05;
    public double Wan { get; set; } = 0.02;
    public UnitLoad Read() => new(Cpu, Wan);
}
