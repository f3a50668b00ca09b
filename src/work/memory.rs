//! Memory work: blocks that are allocated and touched so they are resident, and that go back to the OS when dropped.

use std::hint::black_box;
use std::sync::Once;

/// Chunk size of a block. Each chunk is its own mmap (see `pin_mmap_threshold`), so freeing it unmaps it at once.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Memory held by a task: resident while it lives, returned to the OS when dropped.
#[derive(Debug)]
pub struct MemoryBlock {
    chunks: Vec<Box<[u8]>>,
}

impl MemoryBlock {
    /// Allocates `bytes` (rounded up to whole MiB) and writes every page so it is resident, not just reserved.
    pub fn allocate(bytes: u64) -> Self {
        pin_mmap_threshold();
        let count = usize::try_from(bytes.div_ceil(CHUNK_BYTES as u64)).unwrap_or(usize::MAX);
        let chunks = (0..count).map(|i| vec![(i % 251 + 1) as u8; CHUNK_BYTES].into_boxed_slice()).collect();
        black_box(Self { chunks })
    }

    pub fn bytes(&self) -> u64 {
        (self.chunks.len() * CHUNK_BYTES) as u64
    }
}

/// glibc raises its mmap threshold after each large free, after which freed blocks stay in the heap and resident.
/// Pinning it keeps every chunk on its own mapping, so a freed task gives its memory back to the OS at once.
pub fn pin_mmap_threshold() {
    static PIN: Once = Once::new();
    PIN.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator tuning; called once, before any task allocates.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_whole_chunks() {
        assert_eq!(MemoryBlock::allocate(0).bytes(), 0);
        assert_eq!(MemoryBlock::allocate(1).bytes(), CHUNK_BYTES as u64);
        assert_eq!(MemoryBlock::allocate(3 * CHUNK_BYTES as u64).bytes(), 3 * CHUNK_BYTES as u64);
    }
}
