// The LSTM's time loop as two TensorFlow CPU kernels, for training without cuDNN.
//
// The same recurrence written with TensorFlow ops (network.py: lstm_recurrence_ops) pays the graph executor for
// about forty small ops per frame (the gate slices, the activations, the loop's own bookkeeping), and the two
// cores wait on each other after every one of them (benchmarks/bench_lstm.py measures the two). Here every worker
// thread takes a fixed share of the batch and runs all frames of its rows on its own, one small matrix product and
// one pass over the gates per frame, so the threads meet once per call. Gate blocks are Keras' order i, f, c, o; the
// arithmetic is lstm_recurrence_ops', which the tests compare with keras.layers.LSTM.
//
//   DeepSpeechItLstmForward(projected [T, B, 4N], recurrent [N, 4N]) -> hs, cs [T, B, N], gates [T, B, 4N]
//     projected: x W + b of every frame; gates: i, f, g, o after their activations.
//   DeepSpeechItLstmBackward(d_hs, cs, gates, recurrent) -> d_projected [T, B, 4N]
//     the gradient of the loss with respect to the pre-activations; the recurrent kernel's gradient is one large
//     product the caller makes from it.
//   DeepSpeechItLstmProducts() -> the name of the implementation the `products` attribute resolves to here.
//
// The products with the recurrent kernel, h [rows, N] x R every frame forward and dz [rows, 4N] x R^T backward, are
// most of the work. Three implementations make them:
//   portable         Eigen, as the file is compiled (AVX2 and FMA on x86-64);
//   avx512_float32   AVX-512 register tiles of 8 rows by 48 columns over the kernel packed once per call into
//                    panels of 48 columns, so every frame streams each panel once for all of a thread's rows;
//                    packed panels and register tiles as in Goto and van de Geijn's matrix product (ACM TOMS 2008);
//   avx512_bfloat16  the same tiles with bfloat16 inputs and float32 sums (AVX512-BF16 dot products): what
//                    TensorFlow's mixed_bfloat16 policy makes of a product. On some CPUs (AMD's Zen 4) these can run
//                    twice as many multiply-adds per cycle as float32; on others (Intel's Sapphire Rapids) fewer, so
//                    "bfloat16" takes them only where a first timing of both says they are faster.
// The gates, the cell and their gradients are float32 in all three.
// The `products` attribute asks for "float32" or "bfloat16" (the fastest this CPU has of each kind) or names one
// implementation (the tests compare them).

#define EIGEN_USE_THREADS

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;

// ---- the products ------------------------------------------------------------------------------------------

enum class Products { kPortable, kFloat32, kBfloat16 };

constexpr int64_t kPanel = 48;      // columns of a tile: three 16-float vectors
constexpr int kTileRows = 8;        // 8 x 3 sums, 3 panel vectors and a broadcast fill 28 of the 32 registers

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f")))
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

bool cpu_has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool cpu_has_avx512_bf16() { return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }

// The valid lanes of each of a panel's three vectors (the last panel of a width that is no multiple of 48).
struct PanelMasks {
    __mmask16 lanes[3];
};

PanelMasks panel_masks(int64_t width, int64_t panel) {
    PanelMasks masks;
    for (int v = 0; v < 3; ++v) {
        const int64_t valid = std::clamp<int64_t>(width - panel * kPanel - 16 * v, 0, 16);
        masks.lanes[v] = static_cast<__mmask16>((1u << valid) - 1u);
    }
    return masks;
}

// c[rows, panel] += sums, the lanes of a last panel past the width left as they are.
template <int Rows>
AVX512 inline void add_tile(const __m512 (&sums)[Rows][3], float* c, int64_t ldc, const PanelMasks& masks) {
    for (int r = 0; r < Rows; ++r) {
        for (int v = 0; v < 3; ++v) {
            float* out = c + r * ldc + 16 * v;
            const __mmask16 m = masks.lanes[v];
            _mm512_mask_storeu_ps(out, m, _mm512_add_ps(sums[r][v], _mm512_maskz_loadu_ps(m, out)));
        }
    }
}

// c[rows, panel] += a[rows, depth] x panel[depth, 48] (float32, each frame's dot products in the order of depth).
template <int Rows>
AVX512 void tile_float32(const float* a, int64_t lda, const float* panel, int64_t depth, float* c, int64_t ldc,
                         const PanelMasks& masks) {
    __m512 sums[Rows][3] = {};
    for (int64_t k = 0; k < depth; ++k) {
        const float* row = panel + k * kPanel;
        const __m512 b0 = _mm512_loadu_ps(row), b1 = _mm512_loadu_ps(row + 16), b2 = _mm512_loadu_ps(row + 32);
        for (int r = 0; r < Rows; ++r) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            sums[r][0] = _mm512_fmadd_ps(x, b0, sums[r][0]);
            sums[r][1] = _mm512_fmadd_ps(x, b1, sums[r][1]);
            sums[r][2] = _mm512_fmadd_ps(x, b2, sums[r][2]);
        }
    }
    add_tile<Rows>(sums, c, ldc, masks);
}

// The same over pairs of depth: a and the panel hold bfloat16 pairs (lower half the even index) as 32-bit words.
template <int Rows>
AVX512_BF16 void tile_bfloat16(const uint32_t* a, int64_t lda, const uint32_t* panel, int64_t pairs, float* c,
                               int64_t ldc, const PanelMasks& masks) {
    __m512 sums[Rows][3] = {};
    for (int64_t p = 0; p < pairs; ++p) {
        const uint32_t* row = panel + p * kPanel;
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(row), b1 = (__m512bh)_mm512_loadu_si512(row + 16),
                       b2 = (__m512bh)_mm512_loadu_si512(row + 32);
        for (int r = 0; r < Rows; ++r) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda + p]));
            sums[r][0] = _mm512_dpbf16_ps(sums[r][0], x, b0);
            sums[r][1] = _mm512_dpbf16_ps(sums[r][1], x, b1);
            sums[r][2] = _mm512_dpbf16_ps(sums[r][2], x, b2);
        }
    }
    add_tile<Rows>(sums, c, ldc, masks);
}

template <typename Tile>
void for_row_tiles(int64_t rows, Tile tile) {
    for (int64_t first = 0; first < rows; first += kTileRows) {
        switch (std::min<int64_t>(kTileRows, rows - first)) {
            case 8: tile(first, std::integral_constant<int, 8>()); break;
            case 7: tile(first, std::integral_constant<int, 7>()); break;
            case 6: tile(first, std::integral_constant<int, 6>()); break;
            case 5: tile(first, std::integral_constant<int, 5>()); break;
            case 4: tile(first, std::integral_constant<int, 4>()); break;
            case 3: tile(first, std::integral_constant<int, 3>()); break;
            case 2: tile(first, std::integral_constant<int, 2>()); break;
            default: tile(first, std::integral_constant<int, 1>()); break;
        }
    }
}

// Round to nearest even, as the CPU's own conversion (vcvtneps2bf16) does for every finite value.
uint16_t to_bfloat16(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

// ROW[0, depth) as bfloat16 pairs, zero-padded to an even depth.
AVX512_BF16 void row_to_pairs(const float* row, int64_t depth, uint32_t* out) {
    auto* halves = reinterpret_cast<uint16_t*>(out);
    int64_t k = 0;
    for (; k + 16 <= depth; k += 16) {
        const __m256bh converted = _mm512_cvtneps_pbh(_mm512_loadu_ps(row + k));
        std::memcpy(halves + k, &converted, sizeof converted);
    }
    for (; k < depth; ++k) halves[k] = to_bfloat16(row[k]);
    if (depth % 2) halves[depth] = 0;
}
#else
bool cpu_has_avx512() { return false; }
bool cpu_has_avx512_bf16() { return false; }
#endif

// A [depth, width] operand of every frame's product (R, or R^T for the backward pass), in the form the chosen
// implementation reads: for the tiles, packed once per call into zero-padded panels of kPanel columns.
class RecurrentOperand {
public:
    // SOURCE is R [n, 4n] row-major; TRANSPOSED takes R^T.
    RecurrentOperand(Products products, const float* source, int64_t n, bool transposed)
        : products_(products), source_(source), n_(n), transposed_(transposed),
          depth_(transposed ? 4 * n : n), width_(transposed ? n : 4 * n),
          panels_((width_ + kPanel - 1) / kPanel), pairs_((depth_ + 1) / 2) {
        if (products_ == Products::kFloat32) {
            floats_.assign(panels_ * depth_ * kPanel, 0.0f);
            pack([&](int64_t k, int64_t col, float value) {
                floats_[((col / kPanel) * depth_ + k) * kPanel + col % kPanel] = value;
            });
        } else if (products_ == Products::kBfloat16) {
            words_.assign(panels_ * pairs_ * kPanel, 0u);
            auto* halves = reinterpret_cast<uint16_t*>(words_.data());
            pack([&](int64_t k, int64_t col, float value) {
                halves[(((col / kPanel) * pairs_ + k / 2) * kPanel + col % kPanel) * 2 + k % 2] = to_bfloat16(value);
            });
        }
    }

    int64_t depth() const { return depth_; }

    // c[rows, width] (row stride ldc) += a[rows, depth] (row stride lda) x this operand. SCRATCH is the caller's
    // (one per thread): bfloat16 copies of a's rows.
    void multiply_add(const float* a, int64_t rows, int64_t lda, float* c, int64_t ldc,
                      std::vector<uint32_t>& scratch) const {
        switch (products_) {
            case Products::kPortable: portable(a, rows, lda, c, ldc); return;
#if defined(__x86_64__)
            case Products::kFloat32: tiles_float32(a, rows, lda, c, ldc); return;
            case Products::kBfloat16: tiles_bfloat16(a, rows, lda, c, ldc, scratch); return;
#else
            default: return;
#endif
        }
    }

private:
    // PUT(k, col, value) for every element, in the order the source is stored (R is read once, row by row).
    template <typename Put>
    void pack(Put put) const {
        for (int64_t row = 0; row < n_; ++row) {
            for (int64_t gate = 0; gate < 4 * n_; ++gate) {
                const float value = source_[row * 4 * n_ + gate];
                if (transposed_) {
                    put(gate, row, value);
                } else {
                    put(row, gate, value);
                }
            }
        }
    }

    void portable(const float* a, int64_t rows, int64_t lda, float* c, int64_t ldc) const {
        using Strided = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
        using StridedOut = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
        const ConstMatrixMap kernel(source_, n_, 4 * n_);
        StridedOut out(c, rows, width_, Eigen::OuterStride<>(ldc));
        const Strided in(a, rows, depth_, Eigen::OuterStride<>(lda));
        if (transposed_) {
            out.noalias() += in * kernel.transpose();
        } else {
            out.noalias() += in * kernel;
        }
    }

#if defined(__x86_64__)
    AVX512 void tiles_float32(const float* a, int64_t rows, int64_t lda, float* c, int64_t ldc) const {
        for (int64_t panel = 0; panel < panels_; ++panel) {
            const PanelMasks masks = panel_masks(width_, panel);
            const float* packed = floats_.data() + panel * depth_ * kPanel;
            for_row_tiles(rows, [&](int64_t first, auto height) {
                tile_float32<decltype(height)::value>(a + first * lda, lda, packed, depth_,
                                                      c + first * ldc + panel * kPanel, ldc, masks);
            });
        }
    }

    AVX512_BF16 void tiles_bfloat16(const float* a, int64_t rows, int64_t lda, float* c, int64_t ldc,
                                    std::vector<uint32_t>& scratch) const {
        scratch.resize(rows * pairs_);
        for (int64_t r = 0; r < rows; ++r) row_to_pairs(a + r * lda, depth_, scratch.data() + r * pairs_);
        for (int64_t panel = 0; panel < panels_; ++panel) {
            const PanelMasks masks = panel_masks(width_, panel);
            const uint32_t* packed = words_.data() + panel * pairs_ * kPanel;
            for_row_tiles(rows, [&](int64_t first, auto height) {
                tile_bfloat16<decltype(height)::value>(scratch.data() + first * pairs_, pairs_, packed, pairs_,
                                                       c + first * ldc + panel * kPanel, ldc, masks);
            });
        }
    }
#endif

    Products products_;
    const float* source_;
    int64_t n_;
    bool transposed_;
    int64_t depth_, width_, panels_, pairs_;
    std::vector<float> floats_;
    std::vector<uint32_t> words_;
};

// Whether bfloat16 tiles beat float32 ones here: the best of ten products of each kind at the demo's size,
// alternating, once per process.
bool bfloat16_tiles_pay() {
    static std::once_flag once;
    static bool pays = false;
    std::call_once(once, [] {
        constexpr int64_t kUnits = 384, kRows = 16;
        std::vector<float> kernel(kUnits * 4 * kUnits), h(kRows * kUnits, 0.5f), gates(kRows * 4 * kUnits);
        for (size_t i = 0; i < kernel.size(); ++i) kernel[i] = static_cast<float>(i % 17) / 17.0f - 0.5f;
        const RecurrentOperand floats(Products::kFloat32, kernel.data(), kUnits, false);
        const RecurrentOperand halves(Products::kBfloat16, kernel.data(), kUnits, false);
        std::vector<uint32_t> scratch;
        double best[2] = {1e30, 1e30};
        for (int round = 0; round < 10; ++round) {
            for (int which = 0; which < 2; ++which) {
                const auto started = std::chrono::steady_clock::now();
                (which ? halves : floats).multiply_add(h.data(), kRows, kUnits, gates.data(), 4 * kUnits, scratch);
                best[which] = std::min(best[which], std::chrono::duration<double>(
                                                        std::chrono::steady_clock::now() - started).count());
            }
        }
        pays = best[1] < best[0];
    });
    return pays;
}

const char* products_name(Products products) {
    switch (products) {
        case Products::kFloat32: return "avx512_float32";
        case Products::kBfloat16: return "avx512_bfloat16";
        default: return "portable";
    }
}

// What the `products` attribute resolves to on this CPU, or an error for an implementation it cannot run.
absl::StatusOr<Products> resolve_products(const std::string& asked) {
    if (asked == "portable") return Products::kPortable;
    if (asked == "avx512_float32" || asked == "avx512_bfloat16") {
        const bool bfloat16 = asked == "avx512_bfloat16";
        if (!(bfloat16 ? cpu_has_avx512_bf16() : cpu_has_avx512())) {
            return absl::InvalidArgumentError("this CPU cannot run the " + asked + " products");
        }
        return bfloat16 ? Products::kBfloat16 : Products::kFloat32;
    }
    if (!cpu_has_avx512()) return Products::kPortable;
    if (asked == "bfloat16" && cpu_has_avx512_bf16() && bfloat16_tiles_pay()) return Products::kBfloat16;
    return Products::kFloat32;
}

constexpr char kProductsAttr[] =
    "products: {'float32', 'bfloat16', 'portable', 'avx512_float32', 'avx512_bfloat16'} = 'float32'";

Products products_attribute(OpKernelConstruction* context) {
    std::string asked;
    absl::Status status = context->GetAttr("products", &asked);
    absl::StatusOr<Products> products = status.ok() ? resolve_products(asked) : status;
    if (!products.ok()) {
        context->CtxFailure(__FILE__, __LINE__, products.status());
        return Products::kPortable;
    }
    return *products;
}

// ---- the loop ----------------------------------------------------------------------------------------------

// Each worker thread takes one contiguous share of the batch's rows [first, last) and keeps it for every frame:
// finer blocks would only make the threads meet more often.
template <typename Work>
void for_batch_shares(OpKernelContext* context, int64_t batch, Work work) {
    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int64_t shares = std::min<int64_t>(batch, pool->NumThreads());
    if (shares <= 1) {
        work(0, batch);
        return;
    }
    const int64_t block = (batch + shares - 1) / shares;
    pool->ParallelFor(batch, tensorflow::thread::ThreadPool::SchedulingParams::Fixed(block), work);
}

struct Dimensions {
    int64_t frames, batch, units;
};

bool recurrent_fits(const Tensor& recurrent, int64_t gate_width) {
    return recurrent.dims() == 2 && recurrent.dim_size(1) == gate_width && 4 * recurrent.dim_size(0) == gate_width;
}

class LstmForward : public OpKernel {
public:
    explicit LstmForward(OpKernelConstruction* context) : OpKernel(context), products_(products_attribute(context)) {}

    void Compute(OpKernelContext* context) override {
        const Tensor& projected = context->input(0);
        const Tensor& recurrent = context->input(1);
        OP_REQUIRES(context, projected.dims() == 3 && recurrent_fits(recurrent, projected.dim_size(2)),
                    absl::InvalidArgumentError("projected must be [time, batch, 4 units] and recurrent [units, 4 units]"));
        const Dimensions d{projected.dim_size(0), projected.dim_size(1), recurrent.dim_size(0)};
        Tensor *hs, *cs, *gates;
        OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({d.frames, d.batch, d.units}), &hs));
        OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({d.frames, d.batch, d.units}), &cs));
        OP_REQUIRES_OK(context, context->allocate_output(2, projected.shape(), &gates));
        const float* in = projected.flat<float>().data();
        const RecurrentOperand kernel(products_, recurrent.flat<float>().data(), d.units, false);
        float* h_out = hs->flat<float>().data();
        float* c_out = cs->flat<float>().data();
        float* gate_out = gates->flat<float>().data();
        for_batch_shares(context, d.batch, [&](int64_t first, int64_t last) {
            const int64_t rows = last - first, n = d.units;
            Matrix h = Matrix::Zero(rows, n), c = Matrix::Zero(rows, n);
            std::vector<uint32_t> scratch;
            for (int64_t t = 0; t < d.frames; ++t) {
                const int64_t at = t * d.batch + first;
                MatrixMap g(gate_out + at * 4 * n, rows, 4 * n);
                g.noalias() = ConstMatrixMap(in + at * 4 * n, rows, 4 * n);
                kernel.multiply_add(h.data(), rows, n, g.data(), 4 * n, scratch);
                g.middleCols(0, 2 * n) = g.middleCols(0, 2 * n).array().logistic().matrix();
                g.middleCols(2 * n, n) = g.middleCols(2 * n, n).array().tanh().matrix();
                g.middleCols(3 * n, n) = g.middleCols(3 * n, n).array().logistic().matrix();
                c.array() = g.middleCols(n, n).array() * c.array() + g.middleCols(0, n).array() * g.middleCols(2 * n, n).array();
                h.array() = g.middleCols(3 * n, n).array() * c.array().tanh();
                MatrixMap(h_out + at * n, rows, n) = h;
                MatrixMap(c_out + at * n, rows, n) = c;
            }
        });
    }

private:
    Products products_;
};

class LstmBackward : public OpKernel {
public:
    explicit LstmBackward(OpKernelConstruction* context) : OpKernel(context), products_(products_attribute(context)) {}

    void Compute(OpKernelContext* context) override {
        const Tensor& d_hs = context->input(0);
        const Tensor& cs = context->input(1);
        const Tensor& gates = context->input(2);
        const Tensor& recurrent = context->input(3);
        OP_REQUIRES(context, gates.dims() == 3 && recurrent_fits(recurrent, gates.dim_size(2)) &&
                             d_hs.shape() == cs.shape() && cs.dims() == 3 && cs.dim_size(0) == gates.dim_size(0) &&
                             cs.dim_size(1) == gates.dim_size(1) && cs.dim_size(2) == recurrent.dim_size(0),
                    absl::InvalidArgumentError("d_hs and cs must be [time, batch, units], gates [time, batch, 4 units]"));
        const Dimensions d{gates.dim_size(0), gates.dim_size(1), recurrent.dim_size(0)};
        Tensor* d_projected;
        OP_REQUIRES_OK(context, context->allocate_output(0, gates.shape(), &d_projected));
        const float* d_h_in = d_hs.flat<float>().data();
        const float* c_in = cs.flat<float>().data();
        const float* gate_in = gates.flat<float>().data();
        float* dz_out = d_projected->flat<float>().data();
        const RecurrentOperand kernel_t(products_, recurrent.flat<float>().data(), d.units, true);
        for_batch_shares(context, d.batch, [&](int64_t first, int64_t last) {
            const int64_t rows = last - first, n = d.units;
            Matrix dh_next = Matrix::Zero(rows, n), dc_next = Matrix::Zero(rows, n), dh(rows, n), tanh_c(rows, n),
                   dc(rows, n);
            std::vector<uint32_t> scratch;
            for (int64_t t = d.frames - 1; t >= 0; --t) {
                const int64_t at = t * d.batch + first;
                const ConstMatrixMap g(gate_in + at * 4 * n, rows, 4 * n);
                const auto i = g.middleCols(0, n).array(), f = g.middleCols(n, n).array(),
                           u = g.middleCols(2 * n, n).array(), o = g.middleCols(3 * n, n).array();
                MatrixMap dz(dz_out + at * 4 * n, rows, 4 * n);
                dh.array() = ConstMatrixMap(d_h_in + at * n, rows, n).array() + dh_next.array();
                tanh_c.array() = ConstMatrixMap(c_in + at * n, rows, n).array().tanh();
                dc.array() = dh.array() * o * (1.0f - tanh_c.array().square()) + dc_next.array();
                dz.middleCols(0, n).array() = dc.array() * u * i * (1.0f - i);
                if (t > 0) {
                    dz.middleCols(n, n).array() =
                        dc.array() * ConstMatrixMap(c_in + (at - d.batch) * n, rows, n).array() * f * (1.0f - f);
                } else {
                    dz.middleCols(n, n).setZero();
                }
                dz.middleCols(2 * n, n).array() = dc.array() * i * (1.0f - u.square());
                dz.middleCols(3 * n, n).array() = dh.array() * tanh_c.array() * o * (1.0f - o);
                dc_next.array() = dc.array() * f;
                dh_next.setZero();
                kernel_t.multiply_add(dz.data(), rows, 4 * n, dh_next.data(), n, scratch);
            }
        });
    }

private:
    Products products_;
};

class LstmProducts : public OpKernel {
public:
    explicit LstmProducts(OpKernelConstruction* context)
        : OpKernel(context), products_(products_attribute(context)) {}

    void Compute(OpKernelContext* context) override {
        Tensor* name;
        OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({}), &name));
        name->scalar<tensorflow::tstring>()() = products_name(products_);
    }

private:
    Products products_;
};

absl::Status forward_shapes(InferenceContext* c) {
    ShapeHandle projected, recurrent;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &projected));
    TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &recurrent));
    ShapeHandle state = c->MakeShape({c->Dim(projected, 0), c->Dim(projected, 1), c->Dim(recurrent, 0)});
    c->set_output(0, state);
    c->set_output(1, state);
    c->set_output(2, projected);
    return absl::OkStatus();
}

absl::Status backward_shapes(InferenceContext* c) {
    ShapeHandle gates;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &gates));
    c->set_output(0, gates);
    return absl::OkStatus();
}

}  // namespace

REGISTER_OP("DeepSpeechItLstmForward")
    .Input("projected: float")
    .Input("recurrent: float")
    .Output("hs: float")
    .Output("cs: float")
    .Output("gates: float")
    .Attr(kProductsAttr)
    .SetShapeFn(forward_shapes);

REGISTER_OP("DeepSpeechItLstmBackward")
    .Input("d_hs: float")
    .Input("cs: float")
    .Input("gates: float")
    .Input("recurrent: float")
    .Output("d_projected: float")
    .Attr(kProductsAttr)
    .SetShapeFn(backward_shapes);

REGISTER_OP("DeepSpeechItLstmProducts")
    .Output("implementation: string")
    .Attr(kProductsAttr)
    .SetIsStateful()
    .SetShapeFn([](InferenceContext* c) {
        c->set_output(0, c->Scalar());
        return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("DeepSpeechItLstmForward").Device(tensorflow::DEVICE_CPU), LstmForward);
REGISTER_KERNEL_BUILDER(Name("DeepSpeechItLstmBackward").Device(tensorflow::DEVICE_CPU), LstmBackward);
REGISTER_KERNEL_BUILDER(Name("DeepSpeechItLstmProducts").Device(tensorflow::DEVICE_CPU), LstmProducts);
