using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Tsunagu.Cli.Factory;

namespace Tsunagu.Cli;

/// <summary>What every command that calls the operator API shares: its connection options, running it, printing the answer.</summary>
public static class ApiCommands
{
    private static readonly JsonSerializerOptions Pretty = new(JsonSerializerOptions.Web) { WriteIndented = true };

    /// <summary><paramref name="command"/> with the connection options (server, password, certificate) added.</summary>
    public static Command WithConnection(Command command, Option[] connection)
    {
        foreach (var o in connection) { command.Options.Add(o); }
        return command;
    }

    /// <summary>
    /// Runs <paramref name="action"/> with a client connected as the command line says, under <paramref name="guard"/>
    /// (which turns the API's refusals into a message and an exit code), and prints its answer (<see cref="Format"/>).
    /// </summary>
    public static void Run(Command command, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard,
        Func<ParseResult, OperatorClient, CancellationToken, Task<string>> action) =>
        command.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            Console.WriteLine(Format(await action(r, client, ct)));
            return 0;
        }));

    /// <summary>An answer's JSON indented for reading; an empty answer as nothing, one that is not JSON as it came.</summary>
    public static string Format(string json)
    {
        if (json.Length == 0) { return ""; }
        try
        {
            return JsonNode.Parse(json)?.ToJsonString(Pretty) ?? json;
        }
        catch (JsonException)
        {
            return json;
        }
    }
}
