namespace Tsunagu.IntegrationTests;

/// <summary>A host load a test sets (a fraction); what the version check reads as the host's own load.</summary>
public sealed class SettableHostLoad : Tsunagu.Server.Fleet.IHostLoad
{
    private double _value;

    public double Value { get => Volatile.Read(ref _value); set => Volatile.Write(ref _value, value); }

    public double Current() => Value;
}
