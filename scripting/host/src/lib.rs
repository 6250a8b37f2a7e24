//! siphon scripting host: embeds CPython, one own-GIL subinterpreter per core.
