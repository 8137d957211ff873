namespace Tsunagu.Protocol;

/// <summary>Input that does not follow the wire contract (a malformed MAC, a bad proof encoding, ...).</summary>
public class ProtocolException(string message, Exception? inner = null) : Exception(message, inner);
