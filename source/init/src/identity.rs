//! The device secret busd authenticates with.
//!
//! Precedence: the `nexus.key` boot argument (test images), else the secret
//! kept in busd's disk region, else a new one from the boot's entropy. The
//! region keeps whichever is used when it holds none yet, so a node keeps
//! its identity across boots. The secret never reaches the console.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_store::{BlockDevice, StateStore};

/// The tag of the secret's entry in the region.
const KEY_TAG: &[u8; 6] = b"NXKEY1";

/// Where the secret came from (for the console).
pub type Source = &'static str;

fn stored(entries: &[Vec<u8>]) -> Option<[u8; 32]> {
    entries.iter().rev().find_map(|e| {
        let rest = e.strip_prefix(KEY_TAG.as_slice())?;
        <[u8; 32]>::try_from(rest).ok()
    })
}

/// The device secret, and where it came from.
pub fn device_secret<D: BlockDevice>(
    region: Option<D>,
    boot_arg: Option<[u8; 32]>,
    entropy: [u8; 32],
) -> Result<([u8; 32], Source), String> {
    let Some(dev) = region else {
        return Ok(match boot_arg {
            Some(k) => (k, "the boot arguments"),
            None => (derive(&entropy), "entropy (not kept: no identity region)"),
        });
    };
    let (mut store, _, entries) =
        StateStore::mount(dev).map_err(|e| alloc::format!("identity region: {e:?}"))?;
    let kept = stored(&entries);
    let (secret, source) = match (boot_arg, kept) {
        (Some(k), _) => (k, "the boot arguments"),
        (None, Some(k)) => (k, "the identity region"),
        (None, None) => (derive(&entropy), "entropy (new, kept)"),
    };
    if kept != Some(secret) {
        let mut entry = Vec::with_capacity(38);
        entry.extend_from_slice(KEY_TAG);
        entry.extend_from_slice(&secret);
        store
            .append(&entry)
            .and_then(|()| store.flush())
            .map_err(|e| alloc::format!("identity region: {e:?}"))?;
    }
    Ok((secret, source))
}

/// A secret from entropy, domain-separated from the handshake seeds that
/// use the same bytes.
fn derive(entropy: &[u8; 32]) -> [u8; 32] {
    let mut out = *entropy;
    for (i, b) in out.iter_mut().enumerate() {
        *b ^= 0xA5 ^ (i as u8).wrapping_mul(29);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nexus_store::MemDisk;

    #[test]
    fn the_secret_is_kept_and_the_boot_argument_wins() {
        let mut disk = MemDisk::new(64);
        // First boot, no argument: a new secret from entropy, kept.
        let (s1, src) = device_secret(Some(&mut disk), None, [7; 32]).unwrap();
        assert_eq!(src, "entropy (new, kept)");
        // Next boot: the kept one, whatever the entropy.
        let (s2, src) = device_secret(Some(&mut disk), None, [9; 32]).unwrap();
        assert_eq!((s2, src), (s1, "the identity region"));
        // A boot argument wins, and is kept from then on.
        let (s3, src) = device_secret(Some(&mut disk), Some([1; 32]), [9; 32]).unwrap();
        assert_eq!((s3, src), ([1; 32], "the boot arguments"));
        let (s4, src) = device_secret(Some(&mut disk), None, [9; 32]).unwrap();
        assert_eq!((s4, src), ([1; 32], "the identity region"));
        // Without a region nothing is kept.
        let (s5, _) = device_secret(None::<MemDisk>, None, [7; 32]).unwrap();
        assert_eq!(s5, s1, "same entropy, same derivation");
    }
}
