using System.ComponentModel.DataAnnotations;

namespace Tsunagu.Server.Pages.Shared;

public sealed class LoginForm
{
    [Required, StringLength(64), Display(Name = "Name")]
    public string Name { get; set; } = "";

    [Required, StringLength(256), DataType(DataType.Password), Display(Name = "Password")]
    public string Password { get; set; } = "";
}
