// TensorRT-free logic of the DCNv2 plugin: the attribute list, field parsing and validation,
// serialization, input-shape checks and output-shape arithmetic.
//
// Kept apart from dcnv2Plugin.cpp so that it compiles and is unit-tested where TensorRT is
// absent (CI). The plugin converts TensorRT's PluginField / Dims into the plain views below.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dcn_params.h"
#include "dcnv2Contract.h"

namespace dcn_trt {

// Invalid field or shape. what() is the message the plugin reports through TensorRT's logger.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// ---------------------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------------------

// The field types this plugin accepts; everything else arrives as kOther with the host's
// own type name for the message.
enum class FieldType : int32_t { kInt32, kInt64, kOther };

// One field as a host passes it: TensorRT's PluginField without TensorRT.
struct FieldView {
  char const* name;
  FieldType type;
  void const* data;
  int32_t length;
  char const* typeName;  // for messages ("kINT32", "kFLOAT32", ...)
};

// The attribute list. Names and kinds come from the contract (generated header); the rule
// (smallest valid value) is the plugin's. The creator's getFieldNames, the validation in
// createPlugin and getFieldsToSerialize all walk this one list.
struct AttributeRule {
  contract::Attribute id;
  char const* name;
  contract::AttributeKind kind;
  int32_t minimum;
};

std::array<AttributeRule, contract::kAttributeCount> const& attributeRules();

// Number of values serialized for an attribute: 2 for a pair, 1 for a scalar.
int32_t serializedLength(contract::AttributeKind kind);

// Validated attribute values; pairs are (h, w), a scalar uses index 0.
class DcnAttributes {
 public:
  int32_t value(contract::Attribute attribute, int32_t axis = 0) const;
  void set(contract::Attribute attribute, int32_t first, int32_t second);
  int32_t const* data(contract::Attribute attribute) const;
  bool operator==(DcnAttributes const& other) const { return mValues == other.mValues; }

 private:
  std::array<std::array<int32_t, 2>, contract::kAttributeCount> mValues{};
};

struct ParsedFields {
  DcnAttributes attributes;
  std::vector<std::string> warnings;  // e.g. fields this plugin does not know, ignored
};

// Parses and validates fields as the ONNX parser passes them at build time (INT -> INT32
// length 1, INTS -> INT32 array) or as getFieldsToSerialize wrote them (runtime). Every
// attribute is required; pairs also accept a scalar. Throws InvalidArgument naming the
// field, what came in and what was expected. `who` prefixes every message.
ParsedFields parseFields(FieldView const* fields, int32_t count, std::string const& who);

// Views for getFieldsToSerialize, pointing into `attributes` (which must outlive them).
std::vector<FieldView> serializeFields(DcnAttributes const& attributes);

// Whether the plugin keeps its packed weights between enqueues, from the value of the
// contract's environment variable (contract::kKeepPackedWeightsEnv; nullptr when unset):
// unset, "" or "0" no (pack on every enqueue, the safe default: a refit may change the
// weights under the same pointer), "1" yes. Anything else throws InvalidArgument naming the
// variable and the value.
bool keepPackedWeights(char const* value, std::string const& who);

// ---------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------

// A tensor shape; a dimension of kUnknownDim is not known yet (TensorRT's -1 at build time).
inline constexpr int64_t kUnknownDim = -1;
inline constexpr int32_t kMaxDims = 8;

struct Shape {
  int32_t nbDims;
  std::array<int64_t, kMaxDims> d;
};

std::string describe(Shape const& shape);

// Integer arithmetic for convOutputExtent where unknown dims stay unknown.
struct IntArith {
  using Value = int64_t;
  Value constant(int64_t v) const { return v; }
  Value add(Value a, Value b) const;
  Value sub(Value a, Value b) const;
  Value mul(Value a, Value b) const;
  Value floorDiv(Value a, Value b) const;
};

// The output extent of a convolution along one axis:
//   (in + 2*pad - (dilation*(kernel-1) + 1)) floordiv stride + 1
// written once for any arithmetic: IntArith here and in tests, TensorRT's IExprBuilder in
// getOutputShapes, so the symbolic and concrete shapes cannot disagree.
template <typename Arith>
typename Arith::Value convOutputExtent(Arith& a, typename Arith::Value in, typename Arith::Value kernel,
                                       int32_t stride, int32_t pad, int32_t dilation) {
  auto const span = a.add(a.mul(a.sub(kernel, a.constant(1)), a.constant(dilation)), a.constant(1));
  auto const room = a.sub(a.add(in, a.constant(2 * static_cast<int64_t>(pad))), span);
  return a.add(a.floorDiv(room, a.constant(stride)), a.constant(1));
}

// Checks the inputs (input, offset, mask, weight[, bias]) against each other and the
// attributes; unknown dims are skipped. Returns the output shape (unknown where it depends
// on an unknown dim). Throws InvalidArgument with got/expected.
Shape checkInputShapes(DcnAttributes const& attributes, Shape const* inputs, int32_t count,
                       std::string const& who);

// The kernel's geometry for fully known shapes (checked as above).
dcn::ConvGeometry makeGeometry(DcnAttributes const& attributes, Shape const* inputs, int32_t count,
                               std::string const& who);

// The geometries whose largest workspace bounds an optimization profile's (getWorkspaceSize
// must cover every problem of the profile). The kernel's scratch is not monotonic in the
// problem size (fewer output tiles -> more split-K partials), so the largest problem is not
// enough: every batch from min to max (sampled evenly past kMaxProfileBatches), each at the
// profile's min, opt and max spatial sizes. Corners that are not valid problems are skipped.
inline constexpr int64_t kMaxProfileBatches = 1024;
std::vector<dcn::ConvGeometry> profileGeometries(DcnAttributes const& attributes, Shape const* minShapes,
                                                 Shape const* optShapes, Shape const* maxShapes, int32_t count,
                                                 std::string const& who);

}  // namespace dcn_trt
