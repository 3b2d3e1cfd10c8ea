//! `cargo run -p percept-capi-header` checks that `percept-capi/include/percept.h` is what
//! cbindgen makes of the crate now (exit 1 with a message if not; CI runs this);
//! `cargo run -p percept-capi-header -- --write` rewrites it.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let write = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--write") => true,
        Some(other) => {
            eprintln!("usage: percept-capi-header [--write]  (unknown argument {other:?})");
            return ExitCode::from(2);
        }
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("header/ sits in percept-capi/");
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("percept-capi/cbindgen.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bindings = match cbindgen::Builder::new().with_crate(crate_dir).with_config(config).generate() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cbindgen could not generate the header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = crate_dir.join("include/percept.h");
    if write {
        // Temporary name, then rename: an interrupted run leaves the old header whole.
        let tmp = path.with_extension("h.tmp");
        if let Err(e) = std::fs::write(&tmp, &generated).and_then(|()| std::fs::rename(&tmp, &path)) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
        return ExitCode::SUCCESS;
    }
    match std::fs::read(&path) {
        Ok(committed) if committed == generated => {
            println!("{} is current", path.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!(
                "{} is stale: regenerate it with `cargo run -p percept-capi-header -- --write` and commit it",
                path.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e} (generate it with `cargo run -p percept-capi-header -- --write`)", path.display());
            ExitCode::FAILURE
        }
    }
}
