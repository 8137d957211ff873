using System.CommandLine;
using System.Text.Json;
using Tsunagu.Cli.Factory;
using Tsunagu.Protocol;
using Tsunagu.Server.Data;

namespace Tsunagu.Cli;

/// <summary>`tsunagu media`: local install media (patent 0037): build an image, show its digest, register it as genuine or remove its registration.</summary>
public static class MediaCommands
{
    public static Command Create(Option[] connection, Func<ParseResult, OperatorClient> connect, Func<Func<Task<int>>, Task<int>> guard)
    {
        var bundles = new Option<FileInfo[]>("--bundle") { Description = "signed bundle(s) to put on the medium", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<FileInfo>("--out") { Description = "image file to write (dd it to a USB stick, or keep it as a file)", Required = true };
        var name = new Option<string>("--name") { Description = "name of this medium", Required = true };
        var register = new Option<bool>("--register") { Description = "also register the image's digest with the server as genuine" };
        var create = new Command("create", "write an install image holding bundles and print its digest") { bundles, output, name, register };
        foreach (var o in connection) { create.Options.Add(o); }
        create.SetAction((r, ct) => guard(async () =>
        {
            var files = r.GetValue(bundles)!;
            foreach (var f in files.Where(f => !f.Exists)) { throw new ArgumentException($"--bundle {f.FullName}: no such file"); }
            var target = r.GetValue(output)!;
            var tmp = target.FullName + ".tmp";
            await using (var stream = File.Create(tmp))
            {
                await MediaImage.WriteAsync(stream, r.GetValue(name)!, files.Select(f => f.FullName).ToList(), DateTimeOffset.UtcNow, ct);
            }
            File.Move(tmp, target.FullName, overwrite: true);
            var (index, digest) = await Inspect(target.FullName, ct);
            Console.WriteLine($"wrote {target.FullName}: {index.Bundles.Count} bundle(s), {target.Length} bytes");
            Console.WriteLine($"digest {digest}");
            if (r.GetValue(register))
            {
                using var client = connect(r);
                await client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(digest, index.Name), ct);
                Console.WriteLine($"registered '{index.Name}' as genuine");
            }
            return 0;
        }));

        var image = new Argument<FileInfo>("image") { Description = "install image (file or block device)" };
        var inspect = new Command("inspect", "show an image's index and digest") { image };
        inspect.SetAction((r, ct) => guard(async () =>
        {
            var (index, digest) = await Inspect(r.GetValue(image)!.FullName, ct);
            Console.WriteLine($"name    {index.Name}\ncreated {index.CreatedAt:u}\ndigest  {digest}");
            foreach (var b in index.Bundles) { Console.WriteLine($"  {b.File}  {b.Size} bytes"); }
            return 0;
        }));

        var registerImage = new Command("register", "register an image's digest with the server as genuine") { image };
        foreach (var o in connection) { registerImage.Options.Add(o); }
        registerImage.SetAction((r, ct) => guard(async () =>
        {
            var (index, digest) = await Inspect(r.GetValue(image)!.FullName, ct);
            using var client = connect(r);
            await client.SendJsonAsync(HttpMethod.Post, Routes.Media, new MediaRegistration(digest, index.Name), ct);
            Console.WriteLine($"registered '{index.Name}' ({digest}) as genuine");
            return 0;
        }));

        var list = new Command("list", "list the media registered as genuine");
        foreach (var o in connection) { list.Options.Add(o); }
        list.SetAction((r, ct) => guard(async () =>
        {
            using var client = connect(r);
            var media = JsonSerializer.Deserialize<List<MediaRegistration>>(await client.SendAsync(HttpMethod.Get, Routes.Media, null, ct), JsonSerializerOptions.Web)!;
            foreach (var m in media) { Console.WriteLine($"{m.Digest}  {m.Name}"); }
            Console.WriteLine($"{media.Count} medium/media");
            return 0;
        }));
        var digestArg = new Argument<string>("digest") { Description = "the registered digest (64 hex digits, as `media list` and `media inspect` print it)" };
        var delete = new Command("delete", "remove a registered digest: units presenting the medium are told from then on it is not genuine") { digestArg };
        foreach (var o in connection) { delete.Options.Add(o); }
        delete.SetAction((r, ct) => guard(async () =>
        {
            // the server's grammar, before any connection: 64 hex digits in any case, meant in lower case
            var (digest, problem) = ArtifactStore.ReadDigest(r.GetValue(digestArg));
            if (problem is not null) { throw new ArgumentException(problem); }
            using var client = connect(r);
            await client.SendAsync(HttpMethod.Delete, $"{Routes.Media}/{digest}", null, ct);
            Console.WriteLine($"deleted medium {digest}: units presenting it are now told it is not genuine");
            return 0;
        }));
        return new Command("media", "local install media (USB stick or image file) with bundles") { create, inspect, registerImage, list, delete };
    }

    private static async Task<(MediaIndex Index, string Digest)> Inspect(string path, CancellationToken ct)
    {
        if (!File.Exists(path)) { throw new ArgumentException($"{path}: no such file"); }
        try
        {
            await using var stream = File.OpenRead(path);
            return await MediaImage.InspectAsync(stream, ct);
        }
        catch (MediaFormatException e)
        {
            throw new ArgumentException($"{path}: {e.Message}", e);
        }
    }
}
