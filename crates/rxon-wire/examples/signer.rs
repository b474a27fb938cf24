//! Reads JSON lines `{"secret": S, "payload": P}` from stdin and prints, per line,
//! `<signature> <canonical JSON>` (or `ERROR <why>`): what `cargo xtask interop`
//! compares with the reference signer (`rxon.security.sign_payload`) on random values.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let answer = match serde_json::from_str::<serde_json::Value>(&line) {
            Err(e) => format!("ERROR bad input: {e}"),
            Ok(input) => {
                let secret = input["secret"].as_str().unwrap_or_default();
                let payload = &input["payload"];
                match (
                    rxon_wire::envelope::signature(payload, secret, &[]),
                    rxon_wire::envelope::signed_bytes(payload, &[]),
                ) {
                    (Ok(sig), Ok(bytes)) => format!("{sig} {}", String::from_utf8_lossy(&bytes)),
                    (Err(e), _) | (_, Err(e)) => format!("ERROR {e}"),
                }
            }
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}
