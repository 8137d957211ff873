using System.Security.Cryptography;
using Microsoft.Playwright;
using Tsunagu.Demo;
using Tsunagu.IntegrationTests;
using static Microsoft.Playwright.Assertions;

namespace Tsunagu.BrowserTests;

/// <summary>The console's update program upload (Pages/Console/Programs.cshtml) and a unit's target pattern (Unit.Target.cs) in a real browser.</summary>
[NonParallelizable]
public class ProgramUploadTests
{
    [SetUp]
    public void UseSqlite() => TestServer.DatabaseKind.Value = "sqlite";

    [TearDown]
    public void TearDown() => TestServer.Configure.Value = null;

    [Test]
    public async Task A_signed_bundle_is_uploaded_and_listed_and_a_foreign_signature_is_refused()
    {
        using var release = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        TestServer.Configure.Value = o => o.ReleasePublicKeys = [Convert.ToBase64String(release.ExportSubjectPublicKeyInfo())];
        await using var server = await TestServer.StartAsync();
        byte[] Bundle(ECDsa key) => DemoCatalogue.BuildBundle("p2-back", 7, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1,
            new Dictionary<string, string> { ["vcp"] = "1.0.0" }, key, DateTimeOffset.UtcNow);
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GetByRole(AriaRole.Link, new() { Name = "Programs" }).ClickAsync();

        async Task SubmitAsync(byte[] bundle)
        {
            await page.GetByLabel("Program id (the bundle's id)").FillAsync("p2-back");
            await page.GetByLabel("From pattern").SelectOptionAsync(DemoCatalogue.Pattern2);
            await page.GetByLabel("To pattern (verified)").SelectOptionAsync(DemoCatalogue.Pattern1);
            await page.GetByLabel("Importance (1 most urgent .. 5)").FillAsync("2");
            await page.GetByLabel("Signed bundle").SetInputFilesAsync(new FilePayload { Name = "p2-back.tsb", MimeType = "application/octet-stream", Buffer = bundle });
            await page.GetByRole(AriaRole.Button, new() { Name = "Upload and add" }).ClickAsync();
        }

        await SubmitAsync(Bundle(stranger));
        await Expect(page.Locator("#program-error")).ToContainTextAsync("Nothing was added");
        await Expect(page.Locator("#program-error")).ToContainTextAsync("not an acceptable bundle");
        await Expect(page.Locator("#program-p2-back")).ToHaveCountAsync(0);
        Assert.That((await server.Store.Catalogue.ListUpdateProgramsAsync()).Select(p => p.Id), Does.Not.Contain("p2-back"));

        // the progress bar follows the upload (recorded as the script sets it; the answer then replaces the form)
        var good = Bundle(release);
        await page.EvaluateAsync("""
            () => {
                window.uploadProgress = [];
                const bar = document.getElementById('upload-progress');
                new MutationObserver(() => window.uploadProgress.push([bar.value, bar.max])).observe(bar, { attributes: true, attributeFilter: ['value', 'max'] });
            }
            """);
        await SubmitAsync(good);
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Update program p2-back added");
        var progress = await page.EvaluateAsync<double[][]>("() => window.uploadProgress");
        Assert.That(progress, Is.Not.Empty, "the progress bar moved");
        Assert.That(progress[^1][0], Is.EqualTo(progress[^1][1]), "the progress bar ends full");
        Assert.That(progress[^1][1], Is.GreaterThan(good.Length), "its maximum is the whole request, bundle included");
        Assert.That(progress.Select(p => p[0]), Is.Ordered, "it only moves forward");
        await Expect(page.Locator("#program-p2-back")).ToContainTextAsync(Convert.ToHexStringLower(SHA256.HashData(good)));
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "update programs after an upload"), Is.Empty);
        await browser.ScreenshotAsync("console-programs");
    }

    [Test]
    public async Task A_units_target_pattern_is_set_from_its_page()
    {
        await using var server = await TestServer.StartAsync();
        var mac = (await server.AddUnitsAsync(1))[0].Mac;
        await using var browser = await Browser.OpenAsync(server.Url);
        var page = browser.Page;
        await ConsoleTests.LogInOperatorAsync(page);
        await page.GotoAsync($"/console/units/{mac}");
        await page.GetByLabel("Set the target").SelectOptionAsync(DemoCatalogue.Pattern2);
        await page.GetByRole(AriaRole.Button, new() { Name = "Set target" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"now targets {DemoCatalogue.Pattern2}");
        await Expect(page.Locator("#unit-target")).ToContainTextAsync(DemoCatalogue.Pattern2);
        Assert.That((await server.Store.Units.GetUnitAsync(mac))!.TargetPattern, Is.EqualTo(DemoCatalogue.Pattern2));
        Assert.That(await AccessibilityTests.ViolationsAsync(page, "unit page with the target form"), Is.Empty);
    }

    [Test]
    public async Task Without_javascript_the_upload_form_still_adds_a_program()
    {
        using var release = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        TestServer.Configure.Value = o => o.ReleasePublicKeys = [Convert.ToBase64String(release.ExportSubjectPublicKeyInfo())];
        await using var server = await TestServer.StartAsync();
        var bundle = DemoCatalogue.BuildBundle("p2-back", 7, DemoCatalogue.Pattern2, DemoCatalogue.Pattern1,
            new Dictionary<string, string> { ["vcp"] = "1.0.0" }, release, DateTimeOffset.UtcNow);
        await using var browser = await Browser.OpenAsync(server.Url, javaScript: false);
        var page = browser.Page;
        await page.GotoAsync("/console/login");
        await page.GetByLabel("Name").FillAsync(DemoCatalogue.OperatorName);
        await page.GetByLabel("Password").FillAsync(TestServer.Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Log in" }).ClickAsync();
        await page.GotoAsync("/console/programs");
        await Expect(page.Locator("#upload-progress")).ToBeHiddenAsync();
        await page.GetByLabel("Program id (the bundle's id)").FillAsync("p2-back");
        await page.GetByLabel("From pattern").SelectOptionAsync(DemoCatalogue.Pattern2);
        await page.GetByLabel("To pattern (verified)").SelectOptionAsync(DemoCatalogue.Pattern1);
        await page.GetByLabel("Signed bundle").SetInputFilesAsync(new FilePayload { Name = "p2-back.tsb", MimeType = "application/octet-stream", Buffer = bundle });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload and add" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Update program p2-back added");
        Assert.That(await server.Store.Catalogue.GetUpdateProgramAsync("p2-back"), Is.Not.Null);
    }
}
