//! What the kernel's i_size of each virtual file is known to be at least.
//!
//! Every open raises i_size to the opener's length with a page-cache store
//! (see `fuse::ProcLens::raise_size`), for sendfile(2) and splice, which
//! stop at i_size. A store costs a write to /dev/fuse and a page; most opens
//! do not need one, because the last store, or the last size we replied,
//! already covers them. The kernel changes i_size only at our word: a store
//! (which only grows it), an attribute reply (GETATTR, LOOKUP: it takes our
//! size) and a short page-cache read (it lowers i_size to where our data
//! ended). So a store is needed exactly when the smallest size our replies
//! may since have set is below the opener's length.
//!
//! Replies are applied by the kernel after our write returns, in the
//! requester's context, and a reply made before a later store is then
//! discarded (fs/fuse: `attr_version`). Each size is therefore lowered
//! before the reply is written and raised after the store, under one lock
//! per file, so that what we know is never above what the kernel has.

use std::sync::Mutex;

/// One known lower bound of i_size per virtual file.
#[derive(Debug)]
pub struct KnownSizes {
    sizes: Vec<Mutex<u64>>,
}

impl KnownSizes {
    /// `n` files, whose i_size is not known yet (0: every first open stores).
    pub fn new(n: usize) -> KnownSizes {
        KnownSizes {
            sizes: (0..n).map(|_| Mutex::new(0)).collect(),
        }
    }

    /// Makes i_size of file `i` at least `len`: runs `store` unless it is
    /// already known to be. `store` says whether it raised i_size to `len`.
    pub fn raise(&self, i: usize, len: u64, store: impl FnOnce() -> bool) {
        let Some(known) = self.sizes.get(i) else {
            store();
            return;
        };
        let Ok(mut known) = known.lock() else {
            store();
            return;
        };
        if *known >= len {
            return;
        }
        if store() {
            *known = len;
        }
    }

    /// Runs `reply`, a reply that may set i_size of file `i` to `len`,
    /// with what is known lowered to `len` first.
    pub fn lowering<R>(&self, i: usize, len: u64, reply: impl FnOnce() -> R) -> R {
        let Some(known) = self.sizes.get(i) else {
            return reply();
        };
        match known.lock() {
            Ok(mut known) => {
                *known = (*known).min(len);
                reply()
            }
            Err(_) => reply(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_store_is_made_only_when_no_reply_since_covers_the_length() {
        let k = KnownSizes::new(2);
        let stores = Cell::new(0);
        let store = || {
            stores.set(stores.get() + 1);
            true
        };
        k.raise(0, 100, store);
        assert_eq!(stores.get(), 1, "nothing known: store");
        k.raise(0, 100, store);
        k.raise(0, 60, store);
        assert_eq!(stores.get(), 1, "covered by the last store");
        k.lowering(0, 80, || ());
        k.raise(0, 80, store);
        assert_eq!(stores.get(), 1, "a reply of 80 still covers 80");
        k.raise(0, 100, store);
        assert_eq!(stores.get(), 2, "a reply of 80 may have lowered it");
        k.raise(1, 10, store);
        assert_eq!(stores.get(), 3, "files are apart");
    }

    #[test]
    fn a_store_that_did_not_happen_teaches_nothing() {
        let k = KnownSizes::new(1);
        k.raise(0, 4096, || false);
        let mut stored = false;
        k.raise(0, 4096, || {
            stored = true;
            true
        });
        assert!(stored);
    }

    #[test]
    fn a_reply_above_what_is_known_does_not_raise_it() {
        // The kernel drops a reply older than a store: a large size in a
        // reply proves nothing.
        let k = KnownSizes::new(1);
        k.lowering(0, 1000, || ());
        let mut stored = false;
        k.raise(0, 10, || {
            stored = true;
            true
        });
        assert!(stored);
    }
}
