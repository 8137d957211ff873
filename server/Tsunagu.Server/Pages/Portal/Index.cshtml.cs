using Microsoft.AspNetCore.Mvc;
using Tsunagu.Server.Data;
using Tsunagu.Server.Pages.Shared;

namespace Tsunagu.Server.Pages.Portal;

public sealed class IndexModel(TsunaguStore store) : SessionPageModel("portal")
{
    public IReadOnlyList<UnitRow> Units { get; private set; } = [];

    public async Task<IActionResult> OnGetAsync()
    {
        Units = await store.Units.QueryUnitsAsync(new UnitQuery(Subscriber: Who), HttpContext.RequestAborted);
        return Units.Count == 1 ? Redirect($"/portal/units/{Units[0].Mac}") : Page();
    }
}
