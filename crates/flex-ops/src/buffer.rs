//! Raw access to a flex tensor's values for the in-place kernels (`adam`, `sgd`).

use burn::backend::flex::FlexTensor;

/// `t`, copied into a new buffer if its values are not one contiguous run.
pub(crate) fn dense(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a [`dense`] tensor, for writing: its buffer is copied first only if it
/// is shared (flex's copy-on-write).
pub(crate) fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("the in-place kernels make their tensors contiguous (dense) first");
    &mut t.storage_mut::<f32>()[start..end]
}

/// The values of a [`dense`] tensor.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("the in-place kernels make their tensors contiguous (dense) first")
}
