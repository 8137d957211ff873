using System.Globalization;
using System.Text;
using Tsunagu.Protocol;

namespace Tsunagu.Hal.Linux;

/// <summary>How <see cref="PppoeWanLink"/> runs `pppd` with its PPPoE plugin.</summary>
public sealed record PppoeWanOptions
{
    /// <summary>The Ethernet interface the PPPoE session runs on (the board's WAN port).</summary>
    public required string Interface { get; init; }

    public string PppProgram { get; init; } = "pppd";

    /// <summary>The PPPoE plugin (`pppoe.so` in ppp 2.5, `rp-pppoe.so` in 2.4).</summary>
    public string Plugin { get; init; } = "pppoe.so";

    /// <summary>The `ip` program, to bring the Ethernet port up.</summary>
    public string IpProgram { get; init; } = "ip";

    /// <summary>Where the options file (mode 0600: it holds the password) and the state file are written (tmpfs).</summary>
    public string RunDirectory { get; init; } = "/run/tsunagu/ppp";

    /// <summary>pppd's `ip-up-script` and `ip-down-script`: writes `up IF LOCAL REMOTE DNS1 DNS2` or `down IF` to the file named by ipparam.</summary>
    public string HookScript { get; init; } = "/usr/lib/tsunagu/ppp-event";

    /// <summary>
    /// The PPP unit number: the session's interface is `ppp{Unit}`, whichever role the session has (the provisional
    /// access-point session and the subscriber's session are one after the other on the same interface name).
    /// </summary>
    public int Unit { get; init; }

    public int Mtu { get; init; } = 1492;
    public int Mru { get; init; } = 1492;

    /// <summary>Seconds between LCP echo requests; <see cref="LcpEchoFailure"/> unanswered ones end the session (a dead line).</summary>
    public int LcpEchoInterval { get; init; } = 10;
    public int LcpEchoFailure { get; init; } = 3;

    /// <summary>Longest wait for the session to come up (discovery, LCP, authentication, IPCP).</summary>
    public TimeSpan UpTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Time between two looks at the state file.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How long pppd may take to hang up before it is killed.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Where pppd writes the pid file of a named link, `ppp-LINKNAME.pid` (its _PATH_VARRUN).</summary>
    public string PidDirectory { get; init; } = "/var/run";

    /// <summary>The process file system, to tell whether a recorded pid is still a pppd (`/proc/PID/comm`).</summary>
    public string ProcDirectory { get; init; } = "/proc";

    /// <summary>The `kill` program, to stop a pppd this link did not start.</summary>
    public string KillProgram { get; init; } = "kill";

    /// <summary>The kernel's list of PPPoE sessions, read when a session comes up (its id and the concentrator's MAC, for the PADT at hang-up).</summary>
    public string SessionsFile { get; init; } = "/proc/net/pppoe";

    /// <summary>Written with the session's name servers (null: leave resolv.conf alone).</summary>
    public string? ResolvConf { get; init; } = "/etc/resolv.conf";

    /// <summary>
    /// The interface of the session, fixed by pppd's `ifname` option: when `ppp{Unit}` is taken pppd does not fall back to
    /// another number (the firewall names this one), it fails and the session is dialled again.
    /// </summary>
    public string PppInterface => InterfaceName(Unit);

    /// <summary>The interface name of PPP unit <paramref name="unit"/>.</summary>
    public static string InterfaceName(int unit) => "ppp" + unit.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Method "pppoe": one `pppd` process per session, in the foreground, with an options file generated from the account
/// (plugin and port, user, password, MTU/MRU, LCP echo, `maxfail 1`): CHAP or PAP, whichever the access concentrator
/// asks. The account is checked against <see cref="WanAccountGrammar"/> before anything is touched. The session is up
/// when pppd's ip-up hook writes the local address into the state file; it is lost when pppd exits (LCP echo
/// unanswered: a dead line; the peer hung up) or its ip-down hook runs. Redialling is the caller's: the supervisor
/// sets the link up again when it is lost, and counts refusals (<see cref="WanRefusedException"/>, pppd exit 19).
/// A hang-up asked for (down, a new dial, disposal) ends with a PADT for the session, sent by the link itself after pppd
/// ended (<see cref="IPppoeTerminator"/>): the access concentrator frees the session at once. A session that ended by
/// itself (the peer hung up, or stopped answering) gets none.
/// </summary>
public sealed class PppoeWanLink : IWanLink, INetworkAccess, IDisposable
{
    /// <summary>pppd's exit status when the peer refused our authentication.</summary>
    public const int ExitAuthenticationFailed = 19;

    private readonly PppoeWanOptions _options;
    private readonly ICommandRunner _runner;
    private readonly IPppoeTerminator _terminator;
    private readonly TimeProvider _time;
    private PppoeSession? _session;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _serial = new(1, 1);
    private TaskCompletionSource _lost = NewLost();
    private IRunningCommand? _pppd;
    private CancellationTokenSource? _watch;
    private bool _staleChecked;

    public PppoeWanLink(PppoeWanOptions options, ICommandRunner runner, TimeProvider? time = null, IPppoeTerminator? terminator = null)
    {
        _options = options;
        _runner = runner;
        _terminator = terminator ?? new LinuxPppoeTerminator();
        _time = time ?? TimeProvider.System;
    }

    public bool IsUp { get; private set; }
    public LinkRole? Role { get; private set; }
    public string? Address { get; private set; }
    public Task LinkLost { get { lock (_gate) { return _lost.Task; } } }

    /// <summary>Why the last session ended (for messages), or null.</summary>
    public string? LostReason { get; private set; }

    /// <summary>Why the last hang-up sent no PADT although its session was known (for messages), or null.</summary>
    public string? PadtProblem { get; private set; }

    /// <summary>The watch of the session that is up (for tests), or a completed task.</summary>
    public Task Watching { get; private set; } = Task.CompletedTask;

    public string OptionsPath => Path.Combine(_options.RunDirectory, "wan.options");

    /// <summary>pppd's `linkname`: its pid file is `PidDirectory/ppp-LINKNAME.pid`.</summary>
    public string LinkName => "tsunagu-" + _options.PppInterface;

    /// <summary>The pid file pppd writes for this link (first line: its pid).</summary>
    public string PidFilePath => Path.Combine(_options.PidDirectory, $"ppp-{LinkName}.pid");

    /// <summary>The pid of a pppd this link did not start that was stopped before the first dial (for messages), or null.</summary>
    public int? StalePppdStopped { get; private set; }
    public string StatePath => Path.Combine(_options.RunDirectory, "wan.state");

    /// <summary>The options file for <paramref name="account"/>: one option per line, the user and password quoted.</summary>
    /// <exception cref="HalException">The account breaks the grammar (nothing is written).</exception>
    public string RenderOptions(LinkRole role, WanAccount account)
    {
        if (!string.Equals(account.Method?.Trim(), "pppoe", StringComparison.OrdinalIgnoreCase))
        {
            throw new HalException($"{_options.Interface}: the {role} link uses method '{account.Method}'; this link does pppoe", isTransient: false);
        }
        if (WanAccountGrammar.Problem(account) is { } problem)
        {
            throw new HalException($"{_options.Interface}: the {role} PPPoE account is refused: {problem}", isTransient: false);
        }
        var o = _options;
        var inv = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        void Line(string line) => text.Append(line).Append('\n');
        Line($"plugin {o.Plugin}");
        Line($"nic-{o.Interface}");
        Line($"user \"{account.Username}\"");
        Line($"password \"{account.Password}\"");
        Line("hide-password");
        Line("noauth");
        Line("refuse-eap");
        Line("noipdefault");
        Line("defaultroute");
        Line("replacedefaultroute");
        Line("usepeerdns");
        Line("noaccomp");
        Line("nodeflate");
        Line("nobsdcomp");
        Line($"mtu {o.Mtu.ToString(inv)}");
        Line($"mru {o.Mru.ToString(inv)}");
        Line($"lcp-echo-interval {o.LcpEchoInterval.ToString(inv)}");
        Line($"lcp-echo-failure {o.LcpEchoFailure.ToString(inv)}");
        Line("maxfail 1");
        Line($"unit {o.Unit.ToString(inv)}");
        Line($"ifname {o.PppInterface}");
        Line($"linkname {LinkName}");
        Line($"ipparam {StatePath}");
        Line($"ip-up-script {o.HookScript}");
        Line($"ip-down-script {o.HookScript}");
        return text.ToString();
    }

    /// <summary>Dials: writes the options, starts pppd, and returns when the session has an address.</summary>
    /// <exception cref="WanRefusedException">The access concentrator refused the account.</exception>
    /// <exception cref="HalException">The account is malformed (not transient), or the session did not come up (transient).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; pppd was stopped.</exception>
    public async Task UpAsync(LinkRole role, WanAccount account, CancellationToken cancellationToken)
    {
        var options = RenderOptions(role, account); // refuses before anything is touched
        await _serial.WaitAsync(cancellationToken);
        try
        {
            if (!_staleChecked)
            {
                await StopStalePppdAsync(cancellationToken);
                _staleChecked = true;
            }
            await StopAsync(completeLost: true);
            var bringUp = new CommandLine(_options.IpProgram, "link", "set", _options.Interface, "up");
            var up = await _runner.RunAsync(bringUp, new CommandOptions { Timeout = TimeSpan.FromSeconds(10) }, cancellationToken);
            if (!up.Succeeded)
            {
                throw new HalException($"{_options.Interface}: cannot bring the port up: `{bringUp}` exited with {up.ExitCode}: {up.Diagnostic()}", isTransient: false);
            }
            Directory.CreateDirectory(_options.RunDirectory);
            File.Delete(StatePath);
            WritePrivate(OptionsPath, options);
            var pppd = _runner.Start(new CommandLine(_options.PppProgram, "file", OptionsPath, "nodetach"), null);
            lock (_gate) { _pppd = pppd; }
            string[] fields;
            try
            {
                fields = await WaitForUpAsync(role, pppd, cancellationToken);
            }
            catch
            {
                await StopAsync(completeLost: false);
                throw;
            }
            WriteResolvConf(fields.Skip(4));
            var session = ReadSession();
            lock (_gate)
            {
                _session = session;
                _lost = NewLost();
                IsUp = true;
                Role = role;
                Address = fields[2];
                LostReason = null;
                _watch = new CancellationTokenSource();
                Watching = WatchAsync(pppd, _lost, _watch.Token);
            }
        }
        finally
        {
            _serial.Release();
        }
    }

    /// <summary>
    /// Stops a pppd left from before this link existed (the supervisor died and was started again; pppd runs in its own
    /// session and survives it): it holds `ifname`, so every new pppd would fail to name its interface and exit. Only the
    /// pid in this link's pid file, and only while `/proc/PID/comm` says it is a pppd (a pid can be reused): SIGTERM (pppd
    /// then ends its session properly), SIGKILL after <see cref="PppoeWanOptions.StopGrace"/>.
    /// </summary>
    /// <exception cref="HalException">The stale pppd did not stop (transient: the next dial tries again).</exception>
    private async Task StopStalePppdAsync(CancellationToken cancellationToken)
    {
        string text;
        try
        {
            text = File.ReadAllText(PidFilePath);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return;
        }
        var first = text.Split('\n')[0].Trim();
        if (first.Length is 0 or > 10 || !first.All(char.IsAsciiDigit) || !int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid <= 1)
        {
            return; // not a pid pppd wrote: nothing to stop
        }
        if (!IsPppd(pid)) { return; }
        foreach (var signal in new[] { "-TERM", "-KILL" })
        {
            // its exit status does not matter (the process may have just ended): /proc says whether it is gone
            await _runner.RunAsync(new CommandLine(_options.KillProgram, signal, pid.ToString(CultureInfo.InvariantCulture)), new CommandOptions { Timeout = TimeSpan.FromSeconds(10) }, cancellationToken);
            var since = _time.GetTimestamp();
            while (IsPppd(pid))
            {
                if (_time.GetElapsedTime(since) >= _options.StopGrace) { break; }
                await Task.Delay(_options.PollInterval, _time, cancellationToken);
            }
            if (!IsPppd(pid))
            {
                StalePppdStopped = pid;
                return;
            }
        }
        throw new HalException($"{_options.Interface}: a pppd left from before (pid {pid}, {PidFilePath}) holds {_options.PppInterface} and did not stop", isTransient: true);
    }

    /// <summary>Whether process <paramref name="pid"/> exists and is a pppd.</summary>
    private bool IsPppd(int pid)
    {
        try
        {
            var comm = File.ReadAllText(Path.Combine(_options.ProcDirectory, pid.ToString(CultureInfo.InvariantCulture), "comm")).Trim();
            return string.Equals(comm, Path.GetFileName(_options.PppProgram), StringComparison.Ordinal) || string.Equals(comm, "pppd", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
    }

    private async Task<string[]> WaitForUpAsync(LinkRole role, IRunningCommand pppd, CancellationToken cancellationToken)
    {
        var deadline = _time.GetTimestamp();
        while (true)
        {
            if (ReadState() is { } state && state.Length >= 3 && state[0] == "up" && WanAccountGrammar.IsIPv4(state[2]))
            {
                return state;
            }
            if (pppd.Exited.IsCompleted)
            {
                var code = await pppd.Exited;
                var output = pppd.RecentOutput().Trim();
                if (code == ExitAuthenticationFailed)
                {
                    throw new WanRefusedException($"{_options.Interface}: the access concentrator refused the {role} PPPoE account (pppd exit {code}): {Tail(output)}");
                }
                throw new HalException($"{_options.Interface}: the {role} PPPoE session did not come up (pppd exit {code}): {Tail(output)}", isTransient: true);
            }
            if (_time.GetElapsedTime(deadline) >= _options.UpTimeout)
            {
                throw new HalException($"{_options.Interface}: the {role} PPPoE session did not come up within {_options.UpTimeout.TotalSeconds:0} s: {Tail(pppd.RecentOutput().Trim())}", isTransient: true);
            }
            await Task.WhenAny(Task.Delay(_options.PollInterval, _time, cancellationToken), pppd.Exited);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private async Task WatchAsync(IRunningCommand pppd, TaskCompletionSource lost, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var tick = Task.Delay(_options.PollInterval, _time, cancellationToken);
                await Task.WhenAny(tick, pppd.Exited);
                cancellationToken.ThrowIfCancellationRequested();
                string? reason = null;
                if (pppd.Exited.IsCompleted)
                {
                    var code = await pppd.Exited;
                    reason = code switch
                    {
                        15 => "the peer stopped answering LCP echo requests (pppd exit 15)",
                        16 => "the line hung up (pppd exit 16)",
                        _ => $"pppd exited with {code}",
                    };
                }
                else if (ReadState() is { Length: > 0 } state && state[0] == "down")
                {
                    reason = "the session went down (ip-down)";
                }
                if (reason is null) { continue; }
                lock (_gate)
                {
                    if (cancellationToken.IsCancellationRequested) { return; }
                    IsUp = false;
                    Role = null;
                    Address = null;
                    _session = null; // it ended without us: nothing to say goodbye to
                    LostReason = $"{_options.Interface}: {reason}";
                }
                await pppd.StopAsync(_options.StopGrace, CancellationToken.None);
                lost.TrySetResult();
                return;
            }
        }
        catch (OperationCanceledException)
        {
            // Down or a new Up
        }
    }

    /// <summary>Hangs up: stops pppd (SIGTERM, then SIGKILL after the grace) and removes the options file.</summary>
    public async Task DownAsync(CancellationToken cancellationToken)
    {
        await _serial.WaitAsync(cancellationToken);
        try
        {
            await StopAsync(completeLost: false);
        }
        finally
        {
            _serial.Release();
        }
    }

    private async Task StopAsync(bool completeLost)
    {
        IRunningCommand? pppd;
        PppoeSession? session;
        lock (_gate)
        {
            _watch?.Cancel();
            _watch?.Dispose();
            _watch = null;
            if (completeLost && IsUp) { _lost.TrySetResult(); }
            IsUp = false;
            Role = null;
            Address = null;
            pppd = _pppd;
            _pppd = null;
            session = _session;
            _session = null;
        }
        if (pppd is not null)
        {
            await pppd.StopAsync(_options.StopGrace, CancellationToken.None);
            await pppd.DisposeAsync();
        }
        if (session is { } ended)
        {
            try
            {
                _terminator.SendPadt(_options.Interface, ended);
                PadtProblem = null;
            }
            catch (HalException e)
            {
                // the concentrator then frees the session when its own pppd gives up (LCP Terminate, or echo)
                PadtProblem = e.Message;
            }
        }
        try { File.Delete(OptionsPath); } catch (IOException) { /* the next Up overwrites it */ }
    }

    private PppoeSession? ReadSession()
    {
        try
        {
            return File.Exists(_options.SessionsFile)
                ? LinuxPppoeTerminator.Parse(File.ReadAllText(_options.SessionsFile), _options.Interface, BitConverter.IsLittleEndian)
                : null;
        }
        catch (IOException)
        {
            return null; // no PADT at hang-up; the concentrator's pppd still ends the session
        }
    }

    private string[]? ReadState()
    {
        try
        {
            return File.Exists(StatePath) ? File.ReadAllText(StatePath).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries) : null;
        }
        catch (IOException)
        {
            return null; // being replaced by the hook
        }
    }

    private void WriteResolvConf(IEnumerable<string> servers)
    {
        var valid = servers.Where(WanAccountGrammar.IsIPv4).Take(WanAccountGrammar.MaxDns).ToList();
        if (_options.ResolvConf is not { } path || valid.Count == 0) { return; }
        File.WriteAllText(path, string.Concat(valid.Select(s => $"nameserver {s}\n")));
    }

    private static void WritePrivate(string path, string content)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) { options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite; }
        using (var file = new StreamWriter(temp, Encoding.ASCII, options)) { file.Write(content); }
        File.Move(temp, path, overwrite: true);
    }

    private static string Tail(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length <= 4 ? string.Join(" / ", lines) : string.Join(" / ", lines[^4..]);
    }

    public HttpMessageHandler WrapHandler(HttpMessageHandler inner) => inner;

    public void EnsureRoute()
    {
        if (!IsUp) { throw new HalException($"no route to the server: the PPPoE session on {_options.Interface} is down", isTransient: true); }
    }

    public void Dispose()
    {
        StopAsync(completeLost: false).GetAwaiter().GetResult();
        _serial.Dispose();
    }

    private static TaskCompletionSource NewLost() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
