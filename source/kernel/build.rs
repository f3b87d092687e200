//! Links the kernel at 0x8020_0000 (where OpenSBI jumps) when building for
//! the bare-metal target; does nothing for the host stub.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-none-elf") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rerun-if-changed={dir}/linker.ld");
    }
}
