//! The `siphon` binary: CLI, config and the wiring of edge + reactors + scripting.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("siphon {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    anyhow::bail!("siphon: the node is not wired yet (see issue 6)")
}
