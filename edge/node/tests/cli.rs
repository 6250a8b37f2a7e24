//! The `siphon` command line as an operator meets it: `--version`, `check` on good and bad
//! configs (exit 1 with `file:line: message`), and a config naming an extension the binary
//! was built without (a warning with the rebuild command, never silent).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn siphon(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siphon"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run siphon")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("siphon-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

const SCRIPT: &str = "from siphon import proxy\n\n@proxy.on_request\ndef r(request):\n    request.reply(404, 'Not Found')\n";

#[test]
fn version() {
    let o = siphon(&["--version"], &std::env::temp_dir());
    assert!(o.status.success());
    assert!(text(&o).starts_with("siphon "));
}

#[test]
fn check_accepts_a_good_config_and_counts_handlers() {
    let d = scratch("good");
    std::fs::write(d.join("s.py"), SCRIPT).unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: s.py\n",
    )
    .unwrap();
    let o = siphon(&["check", "-c", "siphon.yaml"], &d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("with 1 handler(s)"), "{}", text(&o));
}

#[test]
fn check_rejects_a_script_that_does_not_compile() {
    let d = scratch("syntax");
    std::fs::write(d.join("s.py"), "def broken(:\n").unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: s.py\n",
    )
    .unwrap();
    let o = siphon(&["check", "-c", "siphon.yaml"], &d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("siphon.yaml:4: script"), "{}", text(&o));
}

#[test]
fn check_rejects_unknown_keys_with_their_line() {
    let d = scratch("unknown");
    std::fs::write(d.join("s.py"), SCRIPT).unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: s.py\nregistrar:\n  max_expirez: 5\n",
    )
    .unwrap();
    let o = siphon(&["check", "-c", "siphon.yaml"], &d);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("siphon.yaml:6: registrar: unknown field `max_expirez`"),
        "{}",
        text(&o)
    );
}

#[test]
fn missing_extension_is_a_warning_naming_the_feature() {
    let d = scratch("ext");
    std::fs::write(d.join("s.py"), SCRIPT).unwrap();
    std::fs::write(d.join("smpp.yaml"), "{}\n").unwrap();
    std::fs::write(
        d.join("siphon.yaml"),
        "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: s.py\nextensions:\n  smpp: smpp.yaml\n",
    )
    .unwrap();
    let o = siphon(&["check", "-c", "siphon.yaml"], &d);
    let t = text(&o);
    if cfg!(feature = "smpp") {
        assert!(o.status.success(), "{t}");
    } else {
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("warning") && t.contains("--features smpp"),
            "{t}"
        );
    }
}
