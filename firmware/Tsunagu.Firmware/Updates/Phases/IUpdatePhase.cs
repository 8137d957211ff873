using Tsunagu.Firmware.Storage;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>
/// One phase of an install. It is entered with the journal in its phase and returns the journal of the next phase
/// (one of its row's <see cref="PhaseRow.OnSuccess"/>), which the updater persists before running that one. It
/// throws to fail: the row's <see cref="PhaseRow.OnFailure"/> says what follows.
/// </summary>
internal interface IUpdatePhase
{
    Task<PendingUpdate> RunAsync(UpdateRun run, PendingUpdate journal, CancellationToken ct);
}
