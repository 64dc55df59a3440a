/*
 * tflite — a small reader for TensorFlow Lite flatbuffer models (.tflite), written for
 * dfd (no flatbuffers library), and a converter from the models it reads into nn graphs.
 *
 * Scope: float models built from the operators that Google's BlazeFace detectors use
 * (CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, PAD, ADD, RELU, RESHAPE, CONCATENATION,
 * DEQUANTIZE, RESIZE_BILINEAR) and MediaPipe's face mesh (face_landmark.tflite: those and
 * PRELU). A file is untrusted input: every offset, vector length
 * and tensor size is checked against the file before it is used, and a graph that uses
 * any other operator is rejected naming it ("unsupported TFLite operator 'LOGISTIC'").
 *
 * Constant tensors are made fp32 at load: FLOAT32 buffers are copied, and DEQUANTIZE of
 * a FLOAT16 constant (how fp16 models store weights) is folded into an fp32 constant.
 */
#ifndef DFD_IO_TFLITE_H
#define DFD_IO_TFLITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "nn/nn.h"

#define TFL_MAX_DIMS 6
#define TFL_MAX_OP_IO 8
/* Strides, dilations, pool windows and convolution kernels larger than this are refused
 * as malformed when the file is read: real models use single digits, and bounding them
 * keeps every size computed from them far from int overflow. */
#define TFL_MAX_WINDOW 4096

/* TensorType values of the TFLite schema (the ones dfd reads). */
enum { TFL_FLOAT32 = 0, TFL_FLOAT16 = 1, TFL_INT32 = 2, TFL_INT64 = 4 };

/* BuiltinOperator codes of the operators dfd supports. */
enum {
    TFL_OP_ADD = 0,
    TFL_OP_CONCATENATION = 2,
    TFL_OP_CONV_2D = 3,
    TFL_OP_DEPTHWISE_CONV_2D = 4,
    TFL_OP_DEQUANTIZE = 6,
    TFL_OP_MAX_POOL_2D = 17,
    TFL_OP_RELU = 19,
    TFL_OP_RESHAPE = 22,
    TFL_OP_RESIZE_BILINEAR = 23,
    TFL_OP_PAD = 34,
    TFL_OP_PRELU = 54
};

/* Fused activations (ActivationFunctionType) and paddings (Padding). */
enum { TFL_ACT_NONE = 0, TFL_ACT_RELU = 1, TFL_ACT_RELU_N1_TO_1 = 2, TFL_ACT_RELU6 = 3, TFL_ACT_TANH = 4 };
enum { TFL_PAD_SAME = 0, TFL_PAD_VALID = 1 };

typedef struct tfl_tensor {
    char *name;                 /* owned, NUL-terminated ("" when the file has none) */
    int ndim;
    int shape[TFL_MAX_DIMS];
    int type;                   /* TFL_FLOAT32, ... (other values kept as read) */
    /* Constant contents, when the tensor has data in the file (or is a folded DEQUANTIZE):
     * fp32 values for float tensors, int32 values for INT32 tensors; NULL otherwise. */
    float *f32;
    int32_t *i32;
    size_t count;               /* number of elements (product of shape) */
} tfl_tensor;

typedef struct tfl_op {
    int code;                   /* BuiltinOperator */
    int n_inputs, n_outputs;
    int inputs[TFL_MAX_OP_IO];  /* tensor indices; -1 = optional input absent */
    int outputs[TFL_MAX_OP_IO];
    /* Builtin options (only those of the op's kind are meaningful). */
    int padding;                /* TFL_PAD_* (conv, depthwise, pool) */
    int stride_w, stride_h;
    int dilation_w, dilation_h;
    int filter_w, filter_h;     /* pool */
    int depth_multiplier;       /* depthwise */
    int activation;             /* TFL_ACT_* fused activation */
    int axis;                   /* concatenation */
    int align_corners, half_pixel_centers; /* resize */
    int n_new_shape;            /* reshape options (when given) */
    int new_shape[TFL_MAX_DIMS];
} tfl_op;

typedef struct tfl_model {
    uint32_t version;           /* schema version (3) */
    int n_tensors;
    tfl_tensor *tensors;
    int n_ops;
    tfl_op *ops;                /* in execution order, as the file lists them */
    int n_inputs, n_outputs;
    int inputs[TFL_MAX_OP_IO];  /* subgraph input / output tensor indices */
    int outputs[TFL_MAX_OP_IO];
    char *description;          /* owned; may be "" */
} tfl_model;

/* Parses a model from memory (the bytes need not outlive the model). Rejects files that
 * are not TFLite ("TFL3"), malformed or truncated ones (DFD_E_CORRUPT), and graphs with
 * more than one subgraph or an operator outside the supported set (DFD_E_UNSUPPORTED,
 * with the operator's name in the message). */
int tfl_parse(const uint8_t *data, size_t len, tfl_model **out, dfd_error *err);
/* Reads and parses a file (capped at 64 MiB). */
int tfl_read_file(const char *path, tfl_model **out, dfd_error *err);
void tfl_free(tfl_model *m);

/* Name of a BuiltinOperator code as the schema spells it ("CONV_2D"); "UNKNOWN" past the
 * table. */
const char *tfl_op_name(int code);

/* Converts a parsed model into an nn graph with the model's outputs marked in the file's
 * order, weights copied in Keras layout (conv OHWI -> HWIO, depthwise 1HWC -> {KH,KW,C,1}).
 * Each layer is named after its output tensor (for Keras-made files such as BlazeFace that
 * is the Keras layer name: "conv2d_3" with params "conv2d_3/kernel", "conv2d_3/bias"), or
 * "<kind>_<op index>" when that name is unusable. Every layer's shape is checked against
 * the shape the file declares. The batch dimension must be 1. DFD_E_UNSUPPORTED names what
 * cannot be expressed in nn. */
int tfl_to_graph(const tfl_model *m, nn_graph **out, dfd_error *err);

#endif
