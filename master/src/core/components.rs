//! Components in the core: storing an upload (within the cap on components no framework
//! references), an operator's delete, and the sweep that collects components no framework
//! has referenced for [`MasterConfig::unreferenced_component_grace`](crate::MasterConfig).
//!
//! Deletes go through the registry (`Command::DeleteComponent`), which refuses one a
//! registered framework names, so every master drops the same components; the times a sweep
//! keeps are the leader's soft state, and a new leader starts every grace period afresh
//! (a component is never collected early because leadership changed).

use std::collections::BTreeSet;

use tracing::info;

use super::{CoreError, MasterCore};
use crate::allocator::Millis;
use crate::blobs::{BlobError, Digest};
use crate::registry::Command;

impl MasterCore {
    /// The digests registered frameworks name (connected or not).
    fn referenced_components(&self) -> BTreeSet<Digest> {
        self.registry
            .frameworks
            .values()
            .filter_map(|f| f.component_sha256.as_deref())
            .filter_map(|d| Digest::parse(d).ok())
            .collect()
    }

    /// Stores a component whose digest the caller computed (outside the lock) with
    /// [`Digest::of`]. Refused if components no framework references would then hold more
    /// than [`MasterConfig::max_unreferenced_component_bytes`](crate::MasterConfig), or the
    /// store would pass its caps.
    pub fn put_component(&mut self, digest: Digest, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.blobs.check_unreferenced_room(
            &digest,
            bytes.len() as u64,
            &self.referenced_components(),
            self.config.max_unreferenced_component_bytes,
        )?;
        self.blobs.insert(digest, bytes)?;
        let shared = self.blobs.get(&digest)?;
        let _ = self.commit(Command::PutComponent {
            sha256: digest.to_string(),
            bytes: crate::registry::BlobBytes(shared),
        });
        info!(component = %digest, store_bytes = self.blobs.used_bytes(), "component stored");
        Ok(())
    }

    /// An operator's delete: drops the component and returns its size. Refused with
    /// [`CoreError::Precondition`] while a registered framework names it, and
    /// [`CoreError::NotFound`] if it is not stored.
    pub fn delete_component(&mut self, digest: &Digest) -> Result<u64, CoreError> {
        if !self.blobs.contains(digest) {
            return Err(CoreError::NotFound(BlobError::Unknown(*digest).to_string()));
        }
        self.commit(Command::DeleteComponent {
            sha256: digest.to_string(),
        })?;
        let size = self.blobs.remove(digest).unwrap_or(0);
        info!(component = %digest, size, store_bytes = self.blobs.used_bytes(), "component deleted by an operator");
        Ok(size)
    }

    /// The garbage-collection timer: deletes components no framework has named for longer
    /// than the grace period.
    pub(super) fn collect_unreferenced_components(&mut self, now: Millis) {
        let grace = Self::ms(self.config.unreferenced_component_grace);
        let referenced = self.referenced_components();
        for digest in self.blobs.collectible(&referenced, now, grace) {
            if self
                .commit(Command::DeleteComponent {
                    sha256: digest.to_string(),
                })
                .is_ok()
            {
                let size = self.blobs.remove(&digest).unwrap_or(0);
                info!(component = %digest, size, "unreferenced component collected");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;
    use wasmos_api::FrameworkId;

    use super::*;
    use crate::MasterConfig;
    use crate::registry::{FrameworkRecord, FrameworkState};

    fn pi() -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples-wasm/target/wasm32-wasip2/release/pi.wasm");
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-examples.sh first", p.display()))
    }

    /// pi with a custom section: the same framework under another digest.
    fn pi_variant(tag: u8) -> Vec<u8> {
        let mut b = pi();
        b.extend_from_slice(&[0, 3, 1, b'x', tag]);
        b
    }

    fn core(config: MasterConfig) -> MasterCore {
        MasterCore::new(config, "t", Arc::new(Notify::new()))
    }

    fn put(core: &mut MasterCore, bytes: Vec<u8>) -> Result<Digest, BlobError> {
        let d = Digest::of(&bytes);
        core.put_component(d, bytes).map(|()| d)
    }

    fn subscribe(core: &mut MasterCore, id: &str, digest: &Digest) {
        core.commit(Command::AddFramework(FrameworkRecord {
            id: FrameworkId::new(id).unwrap(),
            name: id.into(),
            role: "r".into(),
            principal: String::new(),
            failover_timeout_ms: 1000,
            state: FrameworkState::Connected,
            component_sha256: Some(digest.to_string()),
            wasm_budget: Default::default(),
        }))
        .unwrap();
    }

    fn remove(core: &mut MasterCore, id: &str) {
        core.commit(Command::RemoveFramework {
            id: FrameworkId::new(id).unwrap(),
        })
        .unwrap();
    }

    #[test]
    fn delete_refuses_a_referenced_component_and_drops_an_unreferenced_one() {
        let mut core = core(MasterConfig::default());
        let used = put(&mut core, pi()).unwrap();
        let unused = put(&mut core, pi_variant(1)).unwrap();
        subscribe(&mut core, "f1", &used);

        let e = core.delete_component(&used).unwrap_err();
        assert!(matches!(e, CoreError::Precondition(_)), "{e:?}");
        assert!(e.to_string().contains("in use by framework f1"), "{e}");
        assert!(core.blobs().contains(&used));
        assert!(core.registry().components.contains_key(&used.to_string()));

        let size = core.delete_component(&unused).unwrap();
        assert_eq!(size, pi_variant(1).len() as u64);
        assert!(!core.blobs().contains(&unused));
        assert!(!core.registry().components.contains_key(&unused.to_string()));
        assert_eq!(core.blobs().used_bytes(), pi().len() as u64);
        assert!(matches!(
            core.delete_component(&unused),
            Err(CoreError::NotFound(_))
        ));

        // Once its framework is gone, the component can be deleted.
        remove(&mut core, "f1");
        core.delete_component(&used).unwrap();
        assert_eq!(core.blobs().used_bytes(), 0);
    }

    #[test]
    fn unreferenced_components_are_collected_after_their_grace_and_referenced_ones_never() {
        let mut core = core(MasterConfig {
            unreferenced_component_grace: Duration::from_millis(1000),
            ..MasterConfig::default()
        });
        let orphan = put(&mut core, pi_variant(1)).unwrap();
        let used = put(&mut core, pi_variant(2)).unwrap();
        let late = put(&mut core, pi_variant(3)).unwrap();
        subscribe(&mut core, "f1", &used);
        core.collect_unreferenced_components(0);
        // Uploaded first, subscribed within the grace: kept.
        subscribe(&mut core, "f3", &late);
        core.collect_unreferenced_components(900);
        core.collect_unreferenced_components(1000);
        assert!(
            core.blobs().contains(&orphan),
            "kept at the end of its grace"
        );
        core.collect_unreferenced_components(1001);
        assert!(
            !core.blobs().contains(&orphan),
            "collected one past its grace"
        );
        assert!(!core.registry().components.contains_key(&orphan.to_string()));
        core.collect_unreferenced_components(100_000);
        assert!(core.blobs().contains(&used) && core.blobs().contains(&late));

        // A component whose framework ended is collected a grace after the end.
        remove(&mut core, "f1");
        core.collect_unreferenced_components(100_500);
        assert!(core.blobs().contains(&used));
        core.collect_unreferenced_components(101_001);
        assert!(!core.blobs().contains(&used));
        assert!(core.blobs().contains(&late));
        // A well-behaved upload still goes in.
        put(&mut core, pi()).unwrap();
    }

    #[test]
    fn uploads_no_framework_names_are_capped_together() {
        let size = pi().len() as u64;
        let mut core = core(MasterConfig {
            max_unreferenced_component_bytes: 2 * size + 10,
            ..MasterConfig::default()
        });
        let a = put(&mut core, pi_variant(1)).unwrap();
        put(&mut core, pi_variant(2)).unwrap();
        // Exactly at the cap (each variant is pi plus 5 bytes).
        assert_eq!(core.blobs().used_bytes(), 2 * size + 10);
        let e = put(&mut core, pi_variant(3)).unwrap_err();
        assert_eq!(
            e,
            BlobError::UnreferencedFull {
                size: size + 5,
                used: 2 * size + 10,
                limit: 2 * size + 10
            }
        );
        // The same bytes again are not a new component.
        put(&mut core, pi_variant(1)).unwrap();
        // Far past: one component larger than the whole cap.
        let huge: Vec<u8> = {
            let mut b = pi();
            let pad = vec![0u8; 3 * size as usize];
            b.push(0);
            let mut n = pad.len() + 2;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(&[1, b'x']);
            b.extend_from_slice(&pad);
            b
        };
        assert!(matches!(
            put(&mut core, huge),
            Err(BlobError::UnreferencedFull { .. })
        ));
        // Once a framework names one, its bytes no longer count: the next upload fits.
        subscribe(&mut core, "f1", &a);
        put(&mut core, pi_variant(3)).unwrap();
    }
}
