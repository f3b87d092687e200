//! `nexus-bus-keys SECRET_HEX`: prints `PUBLIC_HEX DEVICE_ID` for a static
//! X25519 secret. Used to build static peer lists and test boot arguments.

use std::process::ExitCode;

use dsoftbus::identity::DeviceKey;

fn parse(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn main() -> ExitCode {
    let Some(secret) = std::env::args().nth(1).as_deref().and_then(parse) else {
        eprintln!("usage: nexus-bus-keys SECRET_HEX (64 hex digits)");
        return ExitCode::from(2);
    };
    let key = DeviceKey::from_secret(secret);
    let public: String = key.public().iter().map(|b| format!("{b:02x}")).collect();
    println!("{public} {}", key.id());
    ExitCode::SUCCESS
}
