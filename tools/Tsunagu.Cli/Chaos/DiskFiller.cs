namespace Tsunagu.Cli.Chaos;

/// <summary>Fills a file system to its last byte, for the disk-full faults of the nemesis and the tests.</summary>
public static class DiskFiller
{
    /// <summary>Writes <paramref name="path"/> (a new file) until not even one byte fits; returns the bytes written.</summary>
    public static long Fill(string path)
    {
        var chunk = new byte[1 << 20];
        long written = 0;
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
        while (true)
        {
            try
            {
                file.Write(chunk);
                file.Flush();
                written += chunk.Length;
            }
            catch (IOException) when (chunk.Length > 1)
            {
                // the last pages: halve the writes until not even one byte fits
                chunk = new byte[chunk.Length / 2];
            }
            catch (IOException)
            {
                return written;
            }
        }
    }
}
