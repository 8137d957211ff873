using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tsunagu.Hal;

/// <summary>A board's `board.json` could not be read or lacks a field; the message names the file and the field.</summary>
public sealed class BoardDescriptionException(string message, Exception? inner = null) : HalException(message, isTransient: false, inner);

public sealed record BoardInterfaces(string Wan, string Lan, string Vpn);

/// <summary>The board's cache disk: mounted at <see cref="MountPoint"/>; holds only the cache and may be wiped at any time.</summary>
public sealed record BoardHdd(string MountPoint);

/// <summary>
/// What differs between boards, as data (`board/&lt;name&gt;/board.json`): interface names and the optional cache disk.
/// Unknown fields are ignored so the file can grow without breaking older readers.
/// </summary>
public sealed record BoardDescription(string Name, BoardInterfaces Interfaces, BoardHdd? Hdd)
{
    public const string FileName = "board.json";

    /// <summary>Reads a board description from a `board.json` file or from a folder holding one.</summary>
    /// <exception cref="BoardDescriptionException">Missing, unreadable or incomplete.</exception>
    public static BoardDescription Load(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        string json;
        try
        {
            json = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BoardDescriptionException($"{file}: board description unreadable: {e.Message}", e);
        }
        return Parse(json, file);
    }

    /// <summary>Finds a board by name (`&lt;boardsRoot&gt;/&lt;name&gt;/board.json`) or takes <paramref name="nameOrPath"/> as a path.</summary>
    public static BoardDescription Resolve(string nameOrPath, string boardsRoot)
    {
        if (File.Exists(nameOrPath) || Directory.Exists(nameOrPath) && File.Exists(Path.Combine(nameOrPath, FileName)))
        {
            return Load(nameOrPath);
        }
        var byName = Path.Combine(boardsRoot, nameOrPath, FileName);
        if (!File.Exists(byName))
        {
            throw new BoardDescriptionException($"board '{nameOrPath}': neither a board.json path nor a board in {Path.GetFullPath(boardsRoot)}");
        }
        return Load(byName);
    }

    /// <param name="source">Where the text came from, for error messages.</param>
    public static BoardDescription Parse(string json, string source)
    {
        BoardDescription? board;
        try
        {
            board = JsonSerializer.Deserialize(json, BoardJson.Default.BoardDescription);
        }
        catch (JsonException e)
        {
            throw new BoardDescriptionException($"{source}: board description is not valid JSON: {e.Message}", e);
        }
        if (board is null) { throw new BoardDescriptionException($"{source}: board description is empty"); }
        Require(source, "name", board.Name);
        if (board.Interfaces is null) { throw new BoardDescriptionException($"{source}: interfaces: missing"); }
        Interface(source, "interfaces.wan", board.Interfaces.Wan);
        Interface(source, "interfaces.lan", board.Interfaces.Lan);
        Interface(source, "interfaces.vpn", board.Interfaces.Vpn);
        if (board.Hdd is not null && (string.IsNullOrEmpty(board.Hdd.MountPoint) || !Path.IsPathRooted(board.Hdd.MountPoint)))
        {
            throw new BoardDescriptionException($"{source}: hdd.mountPoint: '{board.Hdd.MountPoint}' must be an absolute path");
        }
        return board;
    }

    /// <summary>The simulated board shipped with the HAL (a copy of `board/simulated/board.json`).</summary>
    public static BoardDescription Simulated { get; } = LoadEmbedded("simulated-board.json");

    private static BoardDescription LoadEmbedded(string name)
    {
        using var stream = typeof(BoardDescription).Assembly.GetManifestResourceStream(name)
                           ?? throw new BoardDescriptionException($"resource {name} is missing from {typeof(BoardDescription).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), $"resource {name}");
    }

    private static void Require(string source, string field, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) { throw new BoardDescriptionException($"{source}: {field}: missing"); }
    }

    /// <summary>Linux interface names: 1..15 characters, no '/', no white space.</summary>
    private static void Interface(string source, string field, string? value)
    {
        Require(source, field, value);
        if (value!.Length > 15 || value.Any(c => c == '/' || c == ':' || char.IsWhiteSpace(c)))
        {
            throw new BoardDescriptionException($"{source}: {field}: '{value}' is not a Linux interface name");
        }
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BoardDescription))]
internal sealed partial class BoardJson : JsonSerializerContext;
