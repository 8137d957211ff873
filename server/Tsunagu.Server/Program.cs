using Tsunagu.Server;

// Tsunagu server: initial setting server + host server (patent 0027), operator API, embedded MQTT broker.
var options = new ServerOptions();
var configuration = new ConfigurationBuilder()
    .AddEnvironmentVariables("TSUNAGU_")
    .AddCommandLine(args)
    .Build();
configuration.GetSection("Tsunagu").Bind(options);
configuration.Bind(options);

var app = await ServerHost.BuildAsync(options, args);
await app.StartAsync();
Console.WriteLine($"tsunagu server listening on {ServerHost.BaseUrl(app)} (data: {Path.GetFullPath(options.DataDirectory)})");
await app.WaitForShutdownAsync();
