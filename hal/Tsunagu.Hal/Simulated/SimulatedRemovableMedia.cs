namespace Tsunagu.Hal.Simulated;

/// <summary>A media slot: tests insert an image file and see whether the unit ejects it.</summary>
public sealed class SimulatedRemovableMedia : IRemovableMedia
{
    private volatile string? _path;

    public string? ImagePath => _path;

    /// <summary>Why the last medium was ejected, or null.</summary>
    public string? EjectedBecause { get; private set; }

    public void Insert(string imagePath)
    {
        if (!File.Exists(imagePath)) { throw new FileNotFoundException($"no install image at {imagePath}", imagePath); }
        EjectedBecause = null;
        _path = imagePath;
    }

    public void Eject(string reason)
    {
        EjectedBecause = reason;
        _path = null;
    }
}
