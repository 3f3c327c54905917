//! Process-wide allocator settings for tensor-heavy work.
//!
//! glibc serves every allocation above its mmap threshold (128 KiB, rising dynamically only up
//! to 32 MiB) with a fresh `mmap` and gives it back with `munmap` on free. A video network
//! allocates and frees activations of tens to hundreds of MiB at every layer, so each forward
//! and backward pass faults in, zeroes and unmaps gigabytes: on the Integrated Gradients
//! benchmark that is 40% of the CPU time, all of it in the kernel. Keeping large blocks in the
//! heap lets the next pass reuse them.

/// Largest allocation still served from the heap rather than a private `mmap` (1 GiB).
pub const MMAP_THRESHOLD: usize = 1 << 30;

/// Free memory at the top of the heap kept for reuse before it is returned to the system
/// (512 MiB): bounds what an idle process holds beyond its peak working set.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Keep freed large blocks for reuse (glibc only; a no-op elsewhere). Call once, first thing
/// in `main`, before threads start. Returns whether the settings took effect.
///
/// The environment (`GLIBC_TUNABLES`, `MALLOC_MMAP_THRESHOLD_`) still wins when it names
/// these settings, so an operator can restore glibc's defaults without a rebuild.
#[allow(unsafe_code)]
pub fn retain_large_allocations() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let configured = |name: &str| {
            std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(name))
                || std::env::var_os(format!("MALLOC_{}_", name.to_uppercase())).is_some()
        };
        let mut ok = true;
        // SAFETY: mallopt only changes glibc's allocator parameters; it is called before
        // any other thread exists, as glibc's documentation asks.
        unsafe {
            if !configured("mmap_threshold") {
                ok &= libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1;
            }
            if !configured("trim_threshold") {
                ok &= libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1;
            }
        }
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        // glibc refuses thresholds it cannot honour (mallopt returns 0); this catches a
        // platform where the values would silently not apply.
        assert!(retain_large_allocations());
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
