//! Host-side checks of the CUDA backend that need no reference values: sizes past a kernel's index
//! width are refused before anything is allocated, and device faults that poison the context are
//! told from other errors. The ops themselves are checked against the CPU by the table in `ops`.

use std::sync::Arc;

use percept::backend::cuda::backend::{Cuda, GpuTensor};
use percept::backend::cuda::device::Device;
use percept::backend::{Act, Backend};
use percept::emu::{Arch, EmuDevice};
use percept::DType;

/// Sizes past a kernel's index width are refused on the host with the op named, before anything
/// is allocated; element-wise ops take 64-bit counts, so a tensor of more than 2^31 elements gets
/// as far as its allocation (refused here by a small emulated device as out of memory).
#[test]
fn sizes_past_the_kernels_index_width_are_refused_before_allocating() {
    use percept::backend::cuda::pool::Block;
    let dev = EmuDevice::with_memory(Arch::Sm80, 64 << 20);
    let gpu = Cuda::new(dev.clone());
    // Tensors whose shapes claim more than they hold: nothing may read them.
    let fake = |shape: Vec<usize>| GpuTensor {
        buf: Arc::new(Block::owned(Device::alloc(&dev, 64).unwrap())),
        shape,
        dtype: DType::F32,
    };
    let rows = (1usize << 31) + 5; // 2^31 + 5 rows of 8: past i32 rows, 2^34 elements
    let (x, w, table) = (fake(vec![rows, 8]), fake(vec![16, 8]), fake(vec![1usize << 32, 4]));
    let before = Device::allocation_count(&dev);
    let e = gpu.linear(&x, &w, None, Act::None).err().expect("a linear of 2^31 rows was accepted").to_string();
    assert!(e.contains("linear") && e.contains(&rows.to_string()) && e.contains("i32"), "{e}");
    let e = gpu.embedding(&table, &[0]).err().expect("a 2^32-row table").to_string();
    assert!(e.contains("embedding") && e.contains("i32"), "{e}");
    assert_eq!(Device::allocation_count(&dev), before, "a refused op allocated device memory");
    // 3 x 2^30 elements: a valid 64-bit count; only the output's 12 GiB are refused.
    let big = fake(vec![3, 1 << 30]);
    let e = gpu.scale(&big, 2.0).err().expect("12 GiB fit in 64 MiB").to_string();
    assert!(e.contains("out of device memory"), "{e}");
    assert!(percept::backend::cuda::launch::checked::<i64>("scale", "element count", 3 << 30).is_ok());
}

/// Faults that poison the CUDA context (the rest of the op test must rerun in a fresh process) are
/// told from errors that leave it usable.
#[test]
fn sticky_device_faults_are_told_from_other_errors() {
    use percept::backend::cuda::gpu::is_sticky_fault;
    use percept::error::Error;
    let driver = |code: &str| Error::Cuda(format!("launch gemm_f32 (grid [1, 1, 1]): DriverError({code}, \"...\")"));
    for code in ["CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_LAUNCH_FAILED", "CUDA_ERROR_MISALIGNED_ADDRESS"] {
        assert!(is_sticky_fault(&driver(code)), "{code}");
    }
    for code in ["CUDA_ERROR_OUT_OF_MEMORY", "CUDA_ERROR_INVALID_VALUE", "CUDA_ERROR_NOT_FOUND"] {
        assert!(!is_sticky_fault(&driver(code)), "{code}");
    }
    assert!(!is_sticky_fault(&Error::Shape("linear: size = 3000000000 does not fit".into())));
}
