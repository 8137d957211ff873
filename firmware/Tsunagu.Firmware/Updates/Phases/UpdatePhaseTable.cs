using Tsunagu.Firmware.Storage;

namespace Tsunagu.Firmware.Updates.Phases;

/// <summary>What a failure in a phase leads to.</summary>
internal enum OnFailure
{
    /// <summary>Nothing was changed yet: the update fails with a report.</summary>
    Fail,

    /// <summary>Back to the previous verified pattern (<see cref="Rollback"/>), then the update fails with a report.</summary>
    RollBackThenFail,
}

/// <summary>What entering an update whose journal is in a phase does (after a restart, a power cut, or a transient error).</summary>
internal enum OnRestart
{
    /// <summary>The phase runs again: it resumes (download) or starts over from what is journalled.</summary>
    Continue,

    /// <summary>The unit's software may be half switched: roll back to the previous pattern, then install again from <c>verified</c>.</summary>
    RollBackToVerified,
}

/// <summary>
/// One row of the updater's phase table: the journalled phase, the class that runs it, the phases it may hand over
/// to, and what a failure in it and a restart that finds the journal in it do. <see cref="AfterReboot"/>: the phase
/// runs only once the unit has restarted (the updater stops with <see cref="InstallStatus.Reboot"/> on entering it).
/// </summary>
internal sealed record PhaseRow(string Phase, IUpdatePhase Runs, IReadOnlyList<string> OnSuccess, OnFailure OnFailure, OnRestart OnRestart,
    bool AfterReboot = false);

/// <summary>
/// The updater's phases in the order they run (firmware/DESIGN.md section 5). The journal `pending-update` is
/// written with the next phase before that phase's risky step, so a restart finds the phase it was in. Across all
/// phases: a transient server error keeps the phase (the next entry continues it); a script's "retry later"
/// (exit 21) rolls back to <c>verified</c>, keeping the bundle; more than <see cref="UpdateOptions.RestartLimit"/>
/// uncontrolled entries roll back and fail the update.
/// </summary>
internal static class UpdatePhaseTable
{
    public static IReadOnlyList<PhaseRow> Rows { get; } =
    [
        //  phase                        runs                on success                                              on failure                  on restart
        new(PendingUpdate.Downloading, new DownloadPhase(), [PendingUpdate.Verified],                               OnFailure.Fail,             OnRestart.Continue),
        new(PendingUpdate.Verified,    new ExtractPhase(),  [PendingUpdate.Switching],                              OnFailure.RollBackThenFail, OnRestart.Continue),
        new(PendingUpdate.Switching,   new SwitchPhase(),   [PendingUpdate.Rebooting, PendingUpdate.Checking],      OnFailure.RollBackThenFail, OnRestart.RollBackToVerified),
        new(PendingUpdate.Rebooting,   new BootedPhase(),   [PendingUpdate.Checking],                               OnFailure.RollBackThenFail, OnRestart.Continue, AfterReboot: true),
        new(PendingUpdate.Checking,    new CheckPhase(),    [PendingUpdate.Installed],                              OnFailure.RollBackThenFail, OnRestart.RollBackToVerified),
    ];

    /// <summary>The phases in which an update is over: its report is kept until the host acknowledges it.</summary>
    public static IReadOnlyList<string> Terminal { get; } = [PendingUpdate.Installed, PendingUpdate.Failed];

    public static PhaseRow? Find(string phase) => Rows.FirstOrDefault(r => r.Phase == phase);

    public static PhaseRow Row(string phase) =>
        Find(phase) ?? throw new InvalidDataException($"the update journal names phase '{phase}', which the updater does not know");
}
