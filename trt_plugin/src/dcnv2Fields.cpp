#include "dcnv2Fields.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <sstream>

namespace dcn_trt {

using contract::Attribute;
using contract::AttributeKind;
using contract::Input;

namespace {

constexpr int32_t index(Attribute attribute) { return static_cast<int32_t>(attribute); }
constexpr int32_t index(Input input) { return static_cast<int32_t>(input); }

// Padding may be 0; stride, dilation and both group counts must be positive.
int32_t minimumOf(Attribute attribute) { return attribute == Attribute::kPadding ? 0 : 1; }

std::string nameOf(Attribute attribute) { return contract::kAttributes[index(attribute)].name; }

std::array<AttributeRule, contract::kAttributeCount> makeRules() {
  std::array<AttributeRule, contract::kAttributeCount> rules{};
  for (int32_t i = 0; i < contract::kAttributeCount; ++i) {
    auto const id = static_cast<Attribute>(i);
    rules[i] = AttributeRule{id, contract::kAttributes[i].name, contract::kAttributes[i].kind, minimumOf(id)};
  }
  return rules;
}

std::string expectedForm(AttributeKind kind) {
  return kind == AttributeKind::kInts ? "INT32 with 1 or 2 values" : "INT32 with 1 value";
}

std::string fieldNameList() {
  std::string names;
  for (auto const& rule : attributeRules()) {
    names += (names.empty() ? "" : ", ") + std::string(rule.name);
  }
  return names;
}

int64_t readInteger(FieldView const& field, int32_t i) {
  if (field.type == FieldType::kInt32) {
    int32_t v;
    std::memcpy(&v, static_cast<char const*>(field.data) + i * sizeof(int32_t), sizeof v);
    return v;
  }
  int64_t v;
  std::memcpy(&v, static_cast<char const*>(field.data) + i * sizeof(int64_t), sizeof v);
  return v;
}

}  // namespace

std::array<AttributeRule, contract::kAttributeCount> const& attributeRules() {
  static auto const rules = makeRules();
  return rules;
}

int32_t serializedLength(AttributeKind kind) { return kind == AttributeKind::kInts ? 2 : 1; }

int32_t DcnAttributes::value(Attribute attribute, int32_t axis) const { return mValues[index(attribute)][axis]; }

void DcnAttributes::set(Attribute attribute, int32_t first, int32_t second) {
  mValues[index(attribute)] = {first, second};
}

int32_t const* DcnAttributes::data(Attribute attribute) const { return mValues[index(attribute)].data(); }

ParsedFields parseFields(FieldView const* fields, int32_t count, std::string const& who) {
  if (count < 0 || (count > 0 && fields == nullptr)) {
    throw InvalidArgument(who + ": no field list given (got " + std::to_string(count) + " fields, null list)");
  }
  ParsedFields parsed;
  std::array<bool, contract::kAttributeCount> seen{};
  for (int32_t f = 0; f < count; ++f) {
    FieldView const& field = fields[f];
    if (field.name == nullptr) {
      throw InvalidArgument(who + ": field #" + std::to_string(f) + " has no name");
    }
    AttributeRule const* rule = nullptr;
    for (auto const& candidate : attributeRules()) {
      if (std::strcmp(candidate.name, field.name) == 0) {
        rule = &candidate;
      }
    }
    if (rule == nullptr) {
      // A host may pass more than we listed (e.g. a hand-built network); ignoring an unknown
      // name is safe, dropping it silently would hide a typo.
      parsed.warnings.push_back(who + ": ignored unknown field '" + field.name + "' (known: " + fieldNameList() +
                                ")");
      continue;
    }
    std::string const where = who + ": field '" + rule->name + "'";
    if (seen[index(rule->id)]) {
      throw InvalidArgument(where + " given twice");
    }
    seen[index(rule->id)] = true;
    if (field.type == FieldType::kOther) {
      throw InvalidArgument(where + " has type " + (field.typeName ? field.typeName : "unknown") +
                            ": expected " + expectedForm(rule->kind));
    }
    int32_t const maxLength = serializedLength(rule->kind);
    if (field.length < 1 || field.length > maxLength) {
      throw InvalidArgument(where + " has " + std::to_string(field.length) + " values: expected " +
                            expectedForm(rule->kind));
    }
    if (field.data == nullptr) {
      throw InvalidArgument(where + " has no data");
    }
    std::array<int64_t, 2> values{};
    values[0] = readInteger(field, 0);
    values[1] = field.length == 2 ? readInteger(field, 1) : values[0];
    for (int32_t axis = 0; axis < 2; ++axis) {
      if (values[axis] < rule->minimum || values[axis] > INT32_MAX) {
        std::string const which = field.length == 2 ? "[" + std::to_string(axis) + "]" : "";
        throw InvalidArgument(where + which + " is out of range: got: " + std::to_string(values[axis]) +
                              " expected: >= " + std::to_string(rule->minimum));
      }
    }
    parsed.attributes.set(rule->id, static_cast<int32_t>(values[0]), static_cast<int32_t>(values[1]));
  }
  for (auto const& rule : attributeRules()) {
    if (!seen[index(rule.id)]) {
      throw InvalidArgument(who + ": missing field '" + rule.name + "' (" + expectedForm(rule.kind) + ")");
    }
  }
  return parsed;
}

std::vector<FieldView> serializeFields(DcnAttributes const& attributes) {
  std::vector<FieldView> views;
  for (auto const& rule : attributeRules()) {
    views.push_back(FieldView{rule.name, FieldType::kInt32, attributes.data(rule.id), serializedLength(rule.kind),
                              "kINT32"});
  }
  return views;
}

// ---------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------

std::string describe(Shape const& shape) {
  std::ostringstream out;
  out << "[";
  for (int32_t i = 0; i < shape.nbDims; ++i) {
    out << (i ? ", " : "");
    if (shape.d[i] == kUnknownDim) {
      out << "?";
    } else {
      out << shape.d[i];
    }
  }
  out << "]";
  return out.str();
}

namespace {
bool unknown(int64_t a) { return a == kUnknownDim; }
}  // namespace

IntArith::Value IntArith::add(Value a, Value b) const { return unknown(a) || unknown(b) ? kUnknownDim : a + b; }
IntArith::Value IntArith::sub(Value a, Value b) const { return unknown(a) || unknown(b) ? kUnknownDim : a - b; }
IntArith::Value IntArith::mul(Value a, Value b) const { return unknown(a) || unknown(b) ? kUnknownDim : a * b; }
IntArith::Value IntArith::floorDiv(Value a, Value b) const {
  if (unknown(a) || unknown(b)) {
    return kUnknownDim;
  }
  Value q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

namespace {

// Compares one dim when both sides are known.
void expectDim(std::string const& who, char const* tensor, Shape const& shape, int32_t axis, int64_t expected,
               std::string const& why) {
  int64_t const got = shape.d[axis];
  if (!unknown(got) && !unknown(expected) && got != expected) {
    throw InvalidArgument(who + ": " + tensor + ".shape[" + std::to_string(axis) + "] is not valid: got: " +
                          std::to_string(got) + " expected: " + std::to_string(expected) + " (" + why + ")");
  }
}

void expectRank(std::string const& who, Shape const& shape, int32_t rank, Input input) {
  if (shape.nbDims != rank) {
    throw InvalidArgument(who + ": " + contract::kInputNames[index(input)] + " must have " + std::to_string(rank) +
                          " dims: got: " + describe(shape));
  }
}

void expectDivisible(std::string const& who, int64_t value, char const* what, int64_t divisor,
                     std::string const& by) {
  if (!unknown(value) && value % divisor != 0) {
    throw InvalidArgument(who + ": " + what + " (" + std::to_string(value) + ") is not divisible by " + by + " (" +
                          std::to_string(divisor) + ")");
  }
}

}  // namespace

Shape checkInputShapes(DcnAttributes const& attributes, Shape const* inputs, int32_t count,
                       std::string const& who) {
  int32_t const required = contract::kInputCount - 1;  // the bias may be absent
  if (inputs == nullptr || count < required || count > contract::kInputCount) {
    std::string names;
    for (int32_t i = 0; i < contract::kInputCount; ++i) {
      names += (i ? ", " : "") + std::string(i == required ? "[" : "") + contract::kInputNames[i] +
               (i == required ? "]" : "");
    }
    throw InvalidArgument(who + ": expected " + std::to_string(required) + " or " +
                          std::to_string(contract::kInputCount) + " inputs (" + names + "): got: " +
                          std::to_string(count));
  }
  Shape const& x = inputs[index(Input::kInput)];
  Shape const& offset = inputs[index(Input::kOffset)];
  Shape const& mask = inputs[index(Input::kMask)];
  Shape const& weight = inputs[index(Input::kWeight)];
  for (Input i : {Input::kInput, Input::kOffset, Input::kMask, Input::kWeight}) {
    expectRank(who, inputs[index(i)], 4, i);
  }
  char const* const xName = contract::kInputNames[index(Input::kInput)];
  char const* const offsetName = contract::kInputNames[index(Input::kOffset)];
  char const* const maskName = contract::kInputNames[index(Input::kMask)];
  char const* const weightName = contract::kInputNames[index(Input::kWeight)];

  int32_t const groups = attributes.value(Attribute::kGroups);
  int32_t const deformableGroups = attributes.value(Attribute::kDeformableGroup);
  int64_t const channels = x.d[1];
  int64_t const outChannels = weight.d[0];
  int64_t const kernelH = weight.d[2];
  int64_t const kernelW = weight.d[3];

  std::string const groupsName = nameOf(Attribute::kGroups);
  std::string const deformableName = nameOf(Attribute::kDeformableGroup);
  expectDivisible(who, channels, "input channels", groups, groupsName);
  expectDivisible(who, channels, "input channels", deformableGroups, deformableName);
  expectDivisible(who, outChannels, "output channels", groups, groupsName);
  expectDim(who, weightName, weight, 1, unknown(channels) ? kUnknownDim : channels / groups,
            "input channels / " + groupsName);

  IntArith arith;
  Shape out{4, {}};
  out.d.fill(0);
  out.d[0] = x.d[0];
  out.d[1] = outChannels;
  for (int32_t axis = 0; axis < 2; ++axis) {
    int64_t const in = x.d[2 + axis];
    int64_t const kernel = weight.d[2 + axis];
    out.d[2 + axis] = convOutputExtent(arith, in, kernel, attributes.value(Attribute::kStride, axis),
                                       attributes.value(Attribute::kPadding, axis),
                                       attributes.value(Attribute::kDilation, axis));
    if (!unknown(out.d[2 + axis]) && out.d[2 + axis] < 1) {
      throw InvalidArgument(who + ": the output would be empty: " + xName + " " + describe(x) + ", " + weightName +
                            " " + describe(weight) + ", " + nameOf(Attribute::kPadding) + " " +
                            std::to_string(attributes.value(Attribute::kPadding, axis)) + ", " +
                            nameOf(Attribute::kDilation) + " " +
                            std::to_string(attributes.value(Attribute::kDilation, axis)) + " along " +
                            (axis == 0 ? "height" : "width"));
    }
  }

  int64_t const taps = arith.mul(kernelH, kernelW);
  expectDim(who, offsetName, offset, 0, x.d[0], "batch of input");
  expectDim(who, offsetName, offset, 1, arith.mul(taps, 2 * deformableGroups), "2 * " + deformableName + " * kh * kw");
  expectDim(who, offsetName, offset, 2, out.d[2], "output height");
  expectDim(who, offsetName, offset, 3, out.d[3], "output width");
  expectDim(who, maskName, mask, 0, x.d[0], "batch of input");
  expectDim(who, maskName, mask, 1, arith.mul(taps, deformableGroups), deformableName + " * kh * kw");
  expectDim(who, maskName, mask, 2, out.d[2], "output height");
  expectDim(who, maskName, mask, 3, out.d[3], "output width");
  if (count == contract::kInputCount) {
    Shape const& bias = inputs[index(Input::kBias)];
    expectRank(who, bias, 1, Input::kBias);
    expectDim(who, contract::kInputNames[index(Input::kBias)], bias, 0, outChannels, "output channels");
  }
  return out;
}

dcn::ConvGeometry makeGeometry(DcnAttributes const& attributes, Shape const* inputs, int32_t count,
                               std::string const& who) {
  Shape const out = checkInputShapes(attributes, inputs, count, who);
  Shape const& x = inputs[index(Input::kInput)];
  Shape const& weight = inputs[index(Input::kWeight)];
  auto narrow = [&](int64_t v, char const* what) {
    if (unknown(v) || v < 0 || v > INT32_MAX) {
      throw InvalidArgument(who + ": " + what + " must be known and fit in int32 at run time: got: " +
                            std::to_string(v));
    }
    return static_cast<int>(v);
  };
  dcn::ConvGeometry g{};
  g.batch = narrow(x.d[0], "batch");
  g.in_channels = narrow(x.d[1], "input channels");
  g.height = narrow(x.d[2], "input height");
  g.width = narrow(x.d[3], "input width");
  g.out_channels = narrow(weight.d[0], "output channels");
  g.kernel_h = narrow(weight.d[2], "kernel height");
  g.kernel_w = narrow(weight.d[3], "kernel width");
  g.stride_h = attributes.value(Attribute::kStride, 0);
  g.stride_w = attributes.value(Attribute::kStride, 1);
  g.pad_h = attributes.value(Attribute::kPadding, 0);
  g.pad_w = attributes.value(Attribute::kPadding, 1);
  g.dilation_h = attributes.value(Attribute::kDilation, 0);
  g.dilation_w = attributes.value(Attribute::kDilation, 1);
  g.groups = attributes.value(Attribute::kGroups);
  g.deformable_groups = attributes.value(Attribute::kDeformableGroup);
  g.out_height = narrow(out.d[2], "output height");
  g.out_width = narrow(out.d[3], "output width");
  return g;
}

std::vector<dcn::ConvGeometry> profileGeometries(DcnAttributes const& attributes, Shape const* minShapes,
                                                 Shape const* optShapes, Shape const* maxShapes, int32_t count,
                                                 std::string const& who) {
  std::vector<dcn::ConvGeometry> geometries;
  // The largest problem first: if it is not valid, the profile is not, and that is an error.
  geometries.push_back(makeGeometry(attributes, maxShapes, count, who));
  std::array<int32_t, 3> const batchCarriers = {static_cast<int32_t>(Input::kInput), static_cast<int32_t>(Input::kOffset),
                                                static_cast<int32_t>(Input::kMask)};
  int64_t const low = minShapes[index(Input::kInput)].d[0];
  int64_t const high = maxShapes[index(Input::kInput)].d[0];
  int64_t const step = high - low + 1 > kMaxProfileBatches ? (high - low + kMaxProfileBatches) / kMaxProfileBatches : 1;
  if (low < 0 || high < low) {
    return geometries;
  }
  for (Shape const* corner : {minShapes, optShapes, maxShapes}) {
    std::vector<Shape> shapes(corner, corner + count);
    for (int64_t batch = low;; batch = std::min(batch + step, high)) {
      for (int32_t i : batchCarriers) {
        shapes[i].d[0] = batch;
      }
      try {
        geometries.push_back(makeGeometry(attributes, shapes.data(), count, who));
      } catch (InvalidArgument const&) {
        // a corner mixing min and max dims of different inputs: not a problem TensorRT runs
      }
      if (batch == high) {
        break;
      }
    }
  }
  return geometries;
}

bool keepPackedWeights(char const* value, std::string const& who) {
  if (value == nullptr || value[0] == '\0' || std::string(value) == "0") {
    return false;
  }
  if (std::string(value) == "1") {
    return true;
  }
  throw InvalidArgument(who + ": environment variable " + contract::kKeepPackedWeightsEnv + " is '" + value +
                        "': expected 1 (keep the packed weights between enqueues), 0 or unset (pack them on "
                        "every enqueue)");
}

}  // namespace dcn_trt
