// The LSTM's time loop as two TensorFlow CPU kernels, for float32 training without cuDNN.
//
// The same recurrence written with TensorFlow ops (network.py: lstm_recurrence_ops) pays the graph executor for
// about forty small ops per frame (the gate slices, the activations, the loop's own bookkeeping), and the two
// cores wait on each other after every one of them (benchmarks/bench_lstm.py measures the two). Here every worker
// thread takes a fixed share of the batch and runs all frames of its rows on its own, one small matrix product and
// one pass over the gates per frame, so the threads meet once per call. Gate blocks are Keras' order i, f, c, o; the arithmetic is lstm_recurrence_ops', which the tests
// compare with keras.layers.LSTM.
//
//   DeepSpeechItLstmForward(projected [T, B, 4N], recurrent [N, 4N]) -> hs, cs [T, B, N], gates [T, B, 4N]
//     projected: x W + b of every frame; gates: i, f, g, o after their activations.
//   DeepSpeechItLstmBackward(d_hs, cs, gates, recurrent) -> d_projected [T, B, 4N]
//     the gradient of the loss with respect to the pre-activations; the recurrent kernel's gradient is one large
//     product the caller makes from it.

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>

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
    explicit LstmForward(OpKernelConstruction* context) : OpKernel(context) {}

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
        const ConstMatrixMap kernel(recurrent.flat<float>().data(), d.units, 4 * d.units);
        float* h_out = hs->flat<float>().data();
        float* c_out = cs->flat<float>().data();
        float* gate_out = gates->flat<float>().data();
        for_batch_shares(context, d.batch, [&](int64_t first, int64_t last) {
            const int64_t rows = last - first, n = d.units;
            Matrix h = Matrix::Zero(rows, n), c = Matrix::Zero(rows, n);
            for (int64_t t = 0; t < d.frames; ++t) {
                const int64_t at = t * d.batch + first;
                MatrixMap g(gate_out + at * 4 * n, rows, 4 * n);
                g.noalias() = ConstMatrixMap(in + at * 4 * n, rows, 4 * n);
                g.noalias() += h * kernel;
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
};

class LstmBackward : public OpKernel {
public:
    explicit LstmBackward(OpKernelConstruction* context) : OpKernel(context) {}

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
        const ConstMatrixMap kernel(recurrent.flat<float>().data(), d.units, 4 * d.units);
        for_batch_shares(context, d.batch, [&](int64_t first, int64_t last) {
            const int64_t rows = last - first, n = d.units;
            Matrix dh_next = Matrix::Zero(rows, n), dc_next = Matrix::Zero(rows, n), dh(rows, n), tanh_c(rows, n),
                   dc(rows, n);
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
                dh_next.noalias() = dz * kernel.transpose();
            }
        });
    }
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
    .SetShapeFn(forward_shapes);

REGISTER_OP("DeepSpeechItLstmBackward")
    .Input("d_hs: float")
    .Input("cs: float")
    .Input("gates: float")
    .Input("recurrent: float")
    .Output("d_projected: float")
    .SetShapeFn(backward_shapes);

REGISTER_KERNEL_BUILDER(Name("DeepSpeechItLstmForward").Device(tensorflow::DEVICE_CPU), LstmForward);
REGISTER_KERNEL_BUILDER(Name("DeepSpeechItLstmBackward").Device(tensorflow::DEVICE_CPU), LstmBackward);
