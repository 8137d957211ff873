using Tsunagu.Protocol;
using Tsunagu.Protocol.Bundles;

namespace Tsunagu.Firmware.Storage;

/// <summary>
/// An application payload whose unpacked tree breaks a rule of the file list its seal would keep (<see cref="FileListRules"/>,
/// the rules of a signed `files` list too; <see cref="AppStore.ReadSeal"/> refuses a seal whose list breaks one, so such a
/// tree could never be checked once installed): refused at install, before anything is switched, so the version installed
/// before stays as it was.
/// </summary>
public sealed class SealRuleException(string payload, FileListRule rule, string detail)
    : ProtocolException($"seal {FileListRules.Name(rule)}: payload {payload}: its unpacked tree cannot be sealed: {detail}")
{
    public string Payload { get; } = payload;
    public FileListRule Rule { get; } = rule;
}
