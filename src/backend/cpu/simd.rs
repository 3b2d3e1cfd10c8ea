//! Loops compiled twice: for AVX-512 (chosen at run time where the CPU has it) and for the
//! baseline x86-64 / other targets. The crate is built for the baseline, where the compiler
//! vectorises a loop 4 floats wide; the AVX-512 copy of the same code runs 16 wide.

/// Whether this CPU runs the AVX-512 copies (checked once).
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `wide_fn! { fn name(args) -> ret { body } }` defines `name` so that its body runs compiled
/// for AVX-512 when the CPU has it. Keep the body free of rayon: closures handed to other
/// threads are compiled for the baseline. Helpers it calls should be `#[inline]` so that
/// they are compiled into the wide copy.
macro_rules! wide_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if $crate::backend::cpu::simd::has_avx512() {
                    // SAFETY: the CPU has every feature `wide` is compiled for (checked above).
                    return unsafe { wide($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use wide_fn;
