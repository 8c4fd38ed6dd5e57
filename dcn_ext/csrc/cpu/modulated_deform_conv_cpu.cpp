// CPU kernels: im2col of modulated samples (parallel over output positions) followed by a
// grouped matrix product. float32/float64 natively; half/bfloat16 are computed in float so
// an fp16 model still runs (and traces) on the CPU.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "../modulated_deform_conv.h"

namespace dcn_ext {
namespace {

// Same sampling rule as kernels/modulated_deform_conv.cuh and reference.py: 0 outside the
// (-1, H) x (-1, W) band, corners outside the image count as 0, NaN coordinates give NaN.
template <typename T>
struct BilinearPoint {
  int64_t index[4] = {0, 0, 0, 0};
  T weight[4] = {0, 0, 0, 0};
  bool valid[4] = {false, false, false, false};
  bool undefined = false;
  T frac_y = 0;
  T frac_x = 0;

  BilinearPoint(T y, T x, int height, int width) {
    undefined = std::isnan(y) || std::isnan(x);
    // False for NaN and +-inf: only finite in-band coordinates reach the integer casts.
    if (!(y > T(-1) && y < T(height) && x > T(-1) && x < T(width))) return;
    const T y_floor = std::floor(y);
    const T x_floor = std::floor(x);
    const int y0 = static_cast<int>(y_floor);
    const int x0 = static_cast<int>(x_floor);
    frac_y = y - y_floor;
    frac_x = x - x_floor;
    const T hy = T(1) - frac_y, hx = T(1) - frac_x;
    weight[0] = hy * hx;
    weight[1] = hy * frac_x;
    weight[2] = frac_y * hx;
    weight[3] = frac_y * frac_x;
    const bool top = y0 >= 0, bottom = y0 + 1 <= height - 1;
    const bool left = x0 >= 0, right = x0 + 1 <= width - 1;
    valid[0] = top && left;
    valid[1] = top && right;
    valid[2] = bottom && left;
    valid[3] = bottom && right;
    const int64_t base = static_cast<int64_t>(y0) * width + x0;
    index[0] = base;
    index[1] = base + 1;
    index[2] = base + width;
    index[3] = base + width + 1;
  }

  void corners(const T* plane, T values[4]) const {
    for (int c = 0; c < 4; ++c) values[c] = valid[c] ? plane[index[c]] : T(0);
  }

  T sample(const T* plane) const {
    if (undefined) return std::numeric_limits<T>::quiet_NaN();
    T value = 0;
    for (int c = 0; c < 4; ++c) {
      if (valid[c]) value += weight[c] * plane[index[c]];
    }
    return value;
  }
};

// Position (deformable group dg, tap k, output pixel l) of one image.
struct TapPosition {
  int dg, k, i, j, ho, wo;
  int64_t location, offset_y_index, mask_index;

  TapPosition(int64_t item, const dcn::ConvGeometry& g) {
    const int taps = g.kernel_h * g.kernel_w;
    const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
    location = item % length;
    k = static_cast<int>((item / length) % taps);
    dg = static_cast<int>(item / (length * taps));
    ho = static_cast<int>(location / g.out_width);
    wo = static_cast<int>(location % g.out_width);
    i = k / g.kernel_w;
    j = k - i * g.kernel_w;
    offset_y_index = (static_cast<int64_t>(dg) * 2 * taps + 2 * k) * length + location;
    mask_index = (static_cast<int64_t>(dg) * taps + k) * length + location;
  }

  template <typename T>
  BilinearPoint<T> point(const T* offset, const dcn::ConvGeometry& g) const {
    const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
    const T y = T(ho * g.stride_h - g.pad_h + i * g.dilation_h) + offset[offset_y_index];
    const T x = T(wo * g.stride_w - g.pad_w + j * g.dilation_w) +
                offset[offset_y_index + length];
    return BilinearPoint<T>(y, x, g.height, g.width);
  }
};

int64_t tap_positions(const dcn::ConvGeometry& g) {
  return static_cast<int64_t>(g.deformable_groups) * g.kernel_h * g.kernel_w * g.out_height *
         g.out_width;
}

constexpr int64_t kGrain = 64;

// Runs body(position, point, modulation) for every (deformable group, tap, output pixel)
// of one image, in parallel: the sampling point is computed once per position and the
// body covers all channels of that deformable group.
template <typename T, typename Body>
void for_each_tap_position(const T* offset, const T* mask, const dcn::ConvGeometry& g,
                           Body&& body) {
  at::parallel_for(0, tap_positions(g), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const TapPosition pos(item, g);
      body(pos, pos.point(offset, g), mask[pos.mask_index]);
    }
  });
}

// columns[(c*K + k), l] = sample * mask for every channel c of deformable group dg.
template <typename T>
void im2col(const T* input, const T* offset, const T* mask, const dcn::ConvGeometry& g,
            T* columns) {
  const int taps = g.kernel_h * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int channels_per_dg = g.in_channels / g.deformable_groups;
  for_each_tap_position(offset, mask, g, [&](const TapPosition& pos,
                                             const BilinearPoint<T>& p, T modulation) {
    for (int c = pos.dg * channels_per_dg; c < (pos.dg + 1) * channels_per_dg; ++c) {
      columns[(static_cast<int64_t>(c) * taps + pos.k) * length + pos.location] =
          p.sample(input + c * plane) * modulation;
    }
  });
}

// Gradients of one image from grad_columns. Offset and mask gradients: parallel over tap
// positions (each written once). Input gradient: parallel over channels, each thread owning
// its channel's plane, so the scatter needs no atomics.
template <typename T>
void col2im(const T* grad_columns, const T* input, const T* offset, const T* mask,
            const dcn::ConvGeometry& g, T* grad_input, T* grad_offset, T* grad_mask) {
  const int taps = g.kernel_h * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int channels_per_dg = g.in_channels / g.deformable_groups;
  for_each_tap_position(offset, mask, g, [&](const TapPosition& pos,
                                             const BilinearPoint<T>& p, T modulation) {
    const T ly = p.frac_y, lx = p.frac_x, hy = T(1) - ly, hx = T(1) - lx;
    T grad_y = 0, grad_x = 0, grad_m = 0;
    for (int c = pos.dg * channels_per_dg; c < (pos.dg + 1) * channels_per_dg; ++c) {
      const T grad_col =
          grad_columns[(static_cast<int64_t>(c) * taps + pos.k) * length + pos.location];
      T v[4];
      p.corners(input + c * plane, v);
      grad_m += grad_col * (p.weight[0] * v[0] + p.weight[1] * v[1] + p.weight[2] * v[2] +
                            p.weight[3] * v[3]);
      grad_y += grad_col * modulation * (hx * (v[2] - v[0]) + lx * (v[3] - v[1]));
      grad_x += grad_col * modulation * (hy * (v[1] - v[0]) + ly * (v[3] - v[2]));
    }
    if (p.undefined) grad_y = grad_x = grad_m = std::numeric_limits<T>::quiet_NaN();
    grad_offset[pos.offset_y_index] = grad_y;
    grad_offset[pos.offset_y_index + length] = grad_x;
    grad_mask[pos.mask_index] = grad_m;
  });
  at::parallel_for(0, g.in_channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int dg = static_cast<int>(c / channels_per_dg);
      T* grad_plane = grad_input + c * plane;
      for (int k = 0; k < taps; ++k) {
        for (int64_t location = 0; location < length; ++location) {
          const TapPosition pos((static_cast<int64_t>(dg) * taps + k) * length + location, g);
          const BilinearPoint<T> p = pos.point(offset, g);
          if (p.undefined) continue;
          const T scaled = grad_columns[(c * taps + k) * length + location] * mask[pos.mask_index];
          for (int corner = 0; corner < 4; ++corner) {
            if (p.valid[corner]) grad_plane[p.index[corner]] += scaled * p.weight[corner];
          }
        }
      }
    }
  });
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& offset,
                       const at::Tensor& mask, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       int64_t deformable_groups) {
  const dcn::ConvGeometry g = check_arguments(input, offset, mask, weight, bias, stride,
                                              padding, dilation, groups, deformable_groups);
  const auto dtype = compute_dtype(input.scalar_type());
  const at::Tensor input_c = input.to(dtype).contiguous();
  const at::Tensor offset_c = offset.to(dtype).contiguous();
  const at::Tensor mask_c = mask.to(dtype).contiguous();
  const at::Tensor weight_c = weight.to(dtype).contiguous();
  const int64_t taps = static_cast<int64_t>(g.kernel_h) * g.kernel_w;
  const int64_t length = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t out_per_group = g.out_channels / g.groups;
  const int64_t in_per_group = g.in_channels / g.groups;

  at::Tensor output = at::empty({g.batch, g.out_channels, g.out_height, g.out_width},
                                input_c.options());
  const at::Tensor weight_groups = weight_c.view({g.groups, out_per_group, in_per_group * taps});
  at::Tensor columns = at::empty({g.in_channels * taps, length}, input_c.options());
  for (int64_t n = 0; n < g.batch; ++n) {
    AT_DISPATCH_FLOATING_TYPES(dtype, "modulated_deform_conv2d_cpu", [&] {
      im2col<scalar_t>(input_c[n].data_ptr<scalar_t>(), offset_c[n].data_ptr<scalar_t>(),
                       mask_c[n].data_ptr<scalar_t>(), g, columns.data_ptr<scalar_t>());
    });
    at::Tensor out_n = output[n].view({g.groups, out_per_group, length});
    at::bmm_out(out_n, weight_groups, columns.view({g.groups, in_per_group * taps, length}));
  }
  if (bias.has_value() && bias->defined()) {
    output.add_(bias->to(dtype).view({1, g.out_channels, 1, 1}));
  }
  return output.to(input.scalar_type()).contiguous(output_memory_format(input));
}

GradTuple backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                       const at::Tensor& offset, const at::Tensor& mask,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups, int64_t deformable_groups) {
  return backward_through_columns(
      grad_output, input, offset, mask, weight, bias, stride, padding, dilation, groups,
      deformable_groups,
      [](const dcn::ConvGeometry& g, const at::Tensor& input_n, const at::Tensor& offset_n,
         const at::Tensor& mask_n, at::Tensor& columns) {
        AT_DISPATCH_FLOATING_TYPES(input_n.scalar_type(), "modulated_deform_im2col_cpu", [&] {
          im2col<scalar_t>(input_n.data_ptr<scalar_t>(), offset_n.data_ptr<scalar_t>(),
                           mask_n.data_ptr<scalar_t>(), g, columns.data_ptr<scalar_t>());
        });
      },
      [](const dcn::ConvGeometry& g, const at::Tensor& grad_columns, const at::Tensor& input_n,
         const at::Tensor& offset_n, const at::Tensor& mask_n, at::Tensor grad_input_n,
         at::Tensor grad_offset_n, at::Tensor grad_mask_n) {
        AT_DISPATCH_FLOATING_TYPES(input_n.scalar_type(), "modulated_deform_col2im_cpu", [&] {
          col2im<scalar_t>(grad_columns.data_ptr<scalar_t>(), input_n.data_ptr<scalar_t>(),
                           offset_n.data_ptr<scalar_t>(), mask_n.data_ptr<scalar_t>(), g,
                           grad_input_n.data_ptr<scalar_t>(),
                           grad_offset_n.data_ptr<scalar_t>(),
                           grad_mask_n.data_ptr<scalar_t>());
        });
      });
}

at::Tensor forward_with_algorithm_cpu(const at::Tensor& input, const at::Tensor& offset,
                                      const at::Tensor& mask, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias,
                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, int64_t groups,
                                      int64_t deformable_groups, int64_t /*algorithm*/) {
  return forward_cpu(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                     deformable_groups);
}

}  // namespace
}  // namespace dcn_ext

DCN_TORCH_LIBRARY_IMPL(DCN_TORCH_NAMESPACE, CPU, m) {
  m.impl(DCN_OP_NAME, TORCH_FN(dcn_ext::forward_cpu));
  m.impl(DCN_BACKWARD_OP_NAME, TORCH_FN(dcn_ext::backward_cpu));
  m.impl(DCN_WITH_ALGORITHM_OP_NAME, TORCH_FN(dcn_ext::forward_with_algorithm_cpu));
}
