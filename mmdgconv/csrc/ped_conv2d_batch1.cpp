// PEDConv's rank-1 forward for one sample at eager inference, in one call.
//
// Hou and Kung, "Parameter Efficient Dynamic Convolution via Tensor
// Decomposition", BMVC 2021: W(x) = W * (gamma(x) o phi(x) o psi(x)), the
// factors from a generator (average pooling, a bottleneck MLP and sigmoid
// heads) that reads the layer's input.
//
// This is PEDConv2d._forward_batch1 (mmdgconv/models/layers/ped_conv2d.py)
// with the same ATen ops in the same order, so the two agree to the last
// bit. At batch 1 a PED-ResNet-50 layer's tensors are small enough that
// Python's dispatch of its dozen ops costs as much as their work; here they
// are dispatched from C++. The Python layer picks the form and checks the
// arguments; this file only computes.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>

#include <string>
#include <vector>

namespace {

using at::Tensor;

// (C,) values as (1, C, 1, 1) in ``dtype``.
Tensor per_channel(const Tensor& values, at::ScalarType dtype) {
  Tensor out = values.scalar_type() == dtype ? values : values.to(dtype);
  return out.view({1, -1, 1, 1});
}

// ``out * scale + bias`` per channel, in place (a fresh conv output).
// A contiguous float or double output on the CPU takes one pass: a product
// then a sum, each rounded, exactly as the two in-place ATen ops compute
// them (no FMA: baseline x86-64 code, and ISO C++ does not contract), but
// reading and writing the output once instead of twice.
Tensor scale_output(Tensor out, const Tensor& scale,
                    const c10::optional<Tensor>& bias) {
  const at::ScalarType dtype = out.scalar_type();
  const bool one_pass =
      out.device().is_cpu() && out.is_contiguous() &&
      (dtype == at::kFloat || dtype == at::kDouble) &&
      scale.scalar_type() == dtype &&
      (!bias.has_value() || bias->scalar_type() == dtype);
  if (!one_pass) {
    out.mul_(per_channel(scale, dtype));
    if (bias.has_value()) out.add_(per_channel(*bias, dtype));
    return out;
  }
  const Tensor scale_ = scale.contiguous();
  const Tensor bias_ = bias.has_value() ? bias->contiguous() : Tensor();
  const int64_t channels = out.size(1), pixels = out.size(2) * out.size(3);
  AT_DISPATCH_FLOATING_TYPES(dtype, "ped_rank1_batch1_scale_output", [&] {
    scalar_t* data = out.data_ptr<scalar_t>();
    const scalar_t* scales = scale_.data_ptr<scalar_t>();
    const scalar_t* shifts =
        bias_.defined() ? bias_.data_ptr<scalar_t>() : nullptr;
    const int64_t grain = std::max<int64_t>(
        1, at::internal::GRAIN_SIZE / std::max<int64_t>(pixels, 1));
    at::parallel_for(0, channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        scalar_t* row = data + c * pixels;
        const scalar_t factor = scales[c];
        if (shifts == nullptr) {
          for (int64_t i = 0; i < pixels; ++i) row[i] *= factor;
        } else {
          const scalar_t shift = shifts[c];
          for (int64_t i = 0; i < pixels; ++i) {
            const scalar_t product = row[i] * factor;
            row[i] = product + shift;
          }
        }
      }
    });
  });
  return out;
}

// unfold(x) for one sample with row (i, u, v) scaled by scale[i, u, v]:
// windows through a strided view of the padded input, gathered and scaled
// in one pass. (C_in * kh * kw, out_h * out_w) as (1, rows, out_h, out_w).
Tensor scaled_columns(const Tensor& x, const Tensor& scale,
                      at::IntArrayRef kernel, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation,
                      at::IntArrayRef out_size) {
  Tensor padded = x;
  if (padding[0] || padding[1]) {
    padded = at::constant_pad_nd(
        x, {padding[1], padding[1], padding[0], padding[0]}, 0);
  }
  const int64_t channels = x.size(1);
  auto s = padded.strides();
  Tensor windows = padded.as_strided(
      {1, channels, kernel[0], kernel[1], out_size[0], out_size[1]},
      {s[0], s[1], dilation[0] * s[2], dilation[1] * s[3], stride[0] * s[2],
       stride[1] * s[3]});
  // An explicit output keeps the columns in logical order.
  Tensor columns = at::empty(windows.sizes(), padded.options());
  at::mul_out(columns,
              windows,
              scale.to(x.scalar_type())
                  .view({1, channels, kernel[0], kernel[1], 1, 1}));
  return columns.view({1, -1, out_size[0], out_size[1]});
}

}  // namespace

// See PEDConv2d._forward_batch1 and _apply_rank1 for the forms:
// 'folded', 'input_folded', 'columns' and 'scaled'.
Tensor ped_rank1_batch1(const Tensor& x, const Tensor& weight,
                        const c10::optional<Tensor>& bias,
                        const Tensor& squeeze_weight,
                        const Tensor& squeeze_bias, const Tensor& heads_weight,
                        const Tensor& heads_bias,
                        const c10::optional<Tensor>& scale,
                        const c10::optional<Tensor>& shift,
                        const std::string& form, std::vector<int64_t> stride,
                        std::vector<int64_t> padding,
                        std::vector<int64_t> dilation, int64_t groups,
                        std::vector<int64_t> factor_sizes,
                        std::vector<int64_t> out_size) {
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1,
              "ped_rank1_batch1: expects one sample (1, C, H, W), got ",
              x.sizes());
  TORCH_CHECK(factor_sizes.size() == 3 && out_size.size() == 2,
              "ped_rank1_batch1: factor_sizes has 3 entries, out_size 2");
  // The generator: the mean's 1 / (H W) goes into the first product.
  const int64_t pixels = std::max<int64_t>(x.size(2) * x.size(3), 1);
  Tensor hidden = at::addmv(squeeze_bias, squeeze_weight,
                            x.select(0, 0).sum({1, 2}), 1.0,
                            1.0 / static_cast<double>(pixels));
  Tensor logits = at::addmv(heads_bias, heads_weight, hidden.relu_());
  std::vector<Tensor> factors =
      logits.sigmoid_().split_with_sizes(factor_sizes);
  Tensor gamma = factors[0], phi = factors[1], psi = factors[2];
  // An affine (an eval-mode BatchNorm after the layer) goes into gamma and
  // the bias.
  c10::optional<Tensor> out_bias = bias;
  if (scale.has_value()) {
    TORCH_CHECK(shift.has_value(), "ped_rank1_batch1: scale without shift");
    out_bias = bias.has_value() ? at::addcmul(*shift, *bias, *scale) : *shift;
    gamma = gamma * *scale;
  }
  const int64_t out_channels = weight.size(0);
  const at::IntArrayRef kernel = weight.sizes().slice(2);
  if (form == "folded" || form == "input_folded") {
    // phi and psi as one (C_in / groups, kh, kw) scale of whole rows.
    Tensor in_scale =
        at::outer(phi.view(-1), psi.view(-1)).view(weight.sizes().slice(1));
    if (form == "input_folded") {
      Tensor out = at::conv2d(x, weight * in_scale, {}, stride, padding,
                              dilation, groups);
      return scale_output(out, gamma, out_bias);
    }
    Tensor kernel_ = weight * gamma.view({-1, 1, 1, 1});
    kernel_.mul_(in_scale);
    return at::conv2d(x, kernel_, out_bias, stride, padding, dilation,
                      groups);
  }
  if (form == "columns") {
    TORCH_CHECK(groups == 1, "ped_rank1_batch1: 'columns' needs groups=1");
    Tensor columns = scaled_columns(
        x, phi.view({-1, 1}) * psi.view({1, -1}), kernel, stride, padding,
        dilation, out_size);
    Tensor out = at::conv2d(
        columns, weight.reshape({out_channels, -1}).view(
                     {out_channels, -1, 1, 1}));
    return scale_output(out, gamma, out_bias);
  }
  TORCH_CHECK(form == "scaled", "ped_rank1_batch1: unknown form '", form,
              "'");
  Tensor in_phi = groups == 1 ? phi : phi.tile({groups});
  Tensor scaled = x * per_channel(in_phi, x.scalar_type());
  Tensor out;
  if (kernel[0] == 1 && kernel[1] == 1) {  // psi is one scalar
    out = at::conv2d(scaled, weight, {}, stride, padding, dilation, groups);
    gamma = gamma * psi;
  } else {
    out = at::conv2d(scaled, weight * psi.reshape(kernel), {}, stride,
                     padding, dilation, groups);
  }
  return scale_output(out, gamma, out_bias);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ped_rank1_batch1", &ped_rank1_batch1,
        "PEDConv2d's rank-1 forward for one sample at eager inference");
}
