// Unit tests of the TensorRT-free plugin logic: field parsing and validation, serialization
// round trip, output-shape arithmetic, input-shape checks. Runs without TensorRT or a GPU.
// Exit status 0 when every check passes; each failure prints its line.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dcnv2Fields.h"

using namespace dcn_trt;
using contract::Attribute;
using contract::AttributeKind;

namespace {

int gFailures = 0;
int gChecks = 0;

#define CHECK(cond)                                                    \
  do {                                                                 \
    ++gChecks;                                                         \
    if (!(cond)) {                                                     \
      ++gFailures;                                                     \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
    }                                                                  \
  } while (0)

// The expression must throw InvalidArgument whose message contains `needle`.
#define CHECK_THROWS_WITH(expr, needle)                                                          \
  do {                                                                                           \
    ++gChecks;                                                                                   \
    std::string message_;                                                                        \
    try {                                                                                        \
      (void)(expr);                                                                              \
      message_ = "<no exception>";                                                               \
    } catch (InvalidArgument const& e) {                                                         \
      message_ = e.what();                                                                       \
    }                                                                                            \
    if (message_.find(needle) == std::string::npos) {                                            \
      ++gFailures;                                                                               \
      std::printf("FAIL %s:%d: %s\n  message: %s\n  expected to contain: %s\n", __FILE__, __LINE__, \
                  #expr, message_.c_str(), std::string(needle).c_str());                        \
    }                                                                                            \
  } while (0)

char const* nameOf(Attribute a) { return contract::kAttributes[static_cast<int>(a)].name; }

// A field list as the ONNX parser builds it: owns the integer storage.
class Fields {
 public:
  Fields& ints(Attribute a, std::vector<int32_t> values) { return add(nameOf(a), std::move(values)); }
  Fields& add(char const* name, std::vector<int32_t> values) {
    mStorage.push_back(std::move(values));
    mNames.push_back(name);
    return *this;
  }
  std::vector<FieldView> views(FieldType type = FieldType::kInt32) const {
    std::vector<FieldView> out;
    for (size_t i = 0; i < mStorage.size(); ++i) {
      out.push_back(FieldView{mNames[i].c_str(), type, mStorage[i].data(), static_cast<int32_t>(mStorage[i].size()),
                              "kINT32"});
    }
    return out;
  }

 private:
  std::vector<std::vector<int32_t>> mStorage;
  std::vector<std::string> mNames;
};

// What a CenterNet DCN layer exports: 3x3, stride 1, padding 1 (INT/INTS as the parser passes).
Fields typicalFields() {
  Fields f;
  f.ints(Attribute::kStride, {1, 1})
      .ints(Attribute::kPadding, {1, 1})
      .ints(Attribute::kDilation, {1, 1})
      .ints(Attribute::kGroups, {1})
      .ints(Attribute::kDeformableGroup, {1});
  return f;
}

ParsedFields parse(Fields const& f, FieldType type = FieldType::kInt32) {
  auto v = f.views(type);
  return parseFields(v.data(), static_cast<int32_t>(v.size()), "test");
}

Shape shape(std::initializer_list<int64_t> dims) {
  Shape s{static_cast<int32_t>(dims.size()), {}};
  int32_t i = 0;
  for (int64_t d : dims) {
    s.d[i++] = d;
  }
  return s;
}

void testAttributeListFollowsContract() {
  auto const& rules = attributeRules();
  CHECK(static_cast<int32_t>(rules.size()) == contract::kAttributeCount);
  for (int32_t i = 0; i < contract::kAttributeCount; ++i) {
    CHECK(std::strcmp(rules[i].name, contract::kAttributes[i].name) == 0);
    CHECK(rules[i].kind == contract::kAttributes[i].kind);
    CHECK(static_cast<int32_t>(rules[i].id) == i);
  }
  CHECK(rules[static_cast<int>(Attribute::kPadding)].minimum == 0);
  CHECK(rules[static_cast<int>(Attribute::kStride)].minimum == 1);
  CHECK(serializedLength(AttributeKind::kInts) == 2);
  CHECK(serializedLength(AttributeKind::kInt) == 1);
}

void testParsesPairsAndScalars() {
  Fields f;
  f.ints(Attribute::kStride, {2})  // INT: scalar form of a pair
      .ints(Attribute::kPadding, {3, 4})
      .ints(Attribute::kDilation, {1, 2})
      .ints(Attribute::kGroups, {2})
      .ints(Attribute::kDeformableGroup, {4});
  DcnAttributes a = parse(f).attributes;
  CHECK(a.value(Attribute::kStride, 0) == 2 && a.value(Attribute::kStride, 1) == 2);
  CHECK(a.value(Attribute::kPadding, 0) == 3 && a.value(Attribute::kPadding, 1) == 4);
  CHECK(a.value(Attribute::kDilation, 0) == 1 && a.value(Attribute::kDilation, 1) == 2);
  CHECK(a.value(Attribute::kGroups) == 2);
  CHECK(a.value(Attribute::kDeformableGroup) == 4);
}

void testParsesInt64Fields() {
  std::vector<int64_t> stride{2, 1};
  std::vector<int64_t> one{1};
  std::vector<FieldView> v;
  for (auto const& rule : attributeRules()) {
    auto const& data = rule.kind == AttributeKind::kInts ? stride : one;
    v.push_back(FieldView{rule.name, FieldType::kInt64, data.data(), static_cast<int32_t>(data.size()), "kINT64"});
  }
  DcnAttributes a = parseFields(v.data(), static_cast<int32_t>(v.size()), "test").attributes;
  CHECK(a.value(Attribute::kStride, 0) == 2 && a.value(Attribute::kStride, 1) == 1);
  CHECK(a.value(Attribute::kPadding, 0) == 2 && a.value(Attribute::kGroups) == 1);
}

void testRejectsBadFields() {
  // missing
  {
    Fields f;
    f.ints(Attribute::kStride, {1}).ints(Attribute::kPadding, {1}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kDeformableGroup, {1});
    CHECK_THROWS_WITH(parse(f), std::string("missing field '") + nameOf(Attribute::kGroups) + "'");
  }
  // wrong type: FLOAT attribute in the ONNX node
  {
    Fields const typical = typicalFields();  // owns the data the views point into
    auto v = typical.views();
    v[0].type = FieldType::kOther;
    v[0].typeName = "kFLOAT32";
    CHECK_THROWS_WITH(parseFields(v.data(), static_cast<int32_t>(v.size()), "test"),
                      std::string("field '") + nameOf(Attribute::kStride) + "' has type kFLOAT32");
  }
  // a pair with three values; a scalar with two
  {
    Fields f = typicalFields();
    f.ints(Attribute::kPadding, {1, 1, 1});
    CHECK_THROWS_WITH(parse(f), "given twice");
  }
  {
    Fields f;
    f.ints(Attribute::kStride, {1, 1, 1}).ints(Attribute::kPadding, {1}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kGroups, {1}).ints(Attribute::kDeformableGroup, {1});
    CHECK_THROWS_WITH(parse(f), "has 3 values: expected INT32 with 1 or 2 values");
  }
  {
    Fields f;
    f.ints(Attribute::kStride, {1}).ints(Attribute::kPadding, {1}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kGroups, {1, 1}).ints(Attribute::kDeformableGroup, {1});
    CHECK_THROWS_WITH(parse(f), "has 2 values: expected INT32 with 1 value");
  }
  // out of range
  {
    Fields f;
    f.ints(Attribute::kStride, {1, 0}).ints(Attribute::kPadding, {0}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kGroups, {1}).ints(Attribute::kDeformableGroup, {1});
    CHECK_THROWS_WITH(parse(f), std::string("'") + nameOf(Attribute::kStride) + "'[1] is out of range: got: 0 expected: >= 1");
  }
  {
    Fields f;
    f.ints(Attribute::kStride, {1}).ints(Attribute::kPadding, {-1}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kGroups, {1}).ints(Attribute::kDeformableGroup, {1});
    CHECK_THROWS_WITH(parse(f), "out of range: got: -1 expected: >= 0");
  }
  {
    Fields f;
    f.ints(Attribute::kStride, {1}).ints(Attribute::kPadding, {0}).ints(Attribute::kDilation, {1});
    f.ints(Attribute::kGroups, {1}).ints(Attribute::kDeformableGroup, {0});
    CHECK_THROWS_WITH(parse(f), std::string("'") + nameOf(Attribute::kDeformableGroup) + "' is out of range: got: 0");
  }
  // null data, null list, empty list
  {
    Fields const typical = typicalFields();  // owns the data the views point into
    auto v = typical.views();
    v[1].data = nullptr;
    CHECK_THROWS_WITH(parseFields(v.data(), static_cast<int32_t>(v.size()), "test"), "has no data");
  }
  CHECK_THROWS_WITH(parseFields(nullptr, 3, "test"), "null list");
  CHECK_THROWS_WITH(parseFields(nullptr, 0, "test"), "missing field");
  // the prefix names the layer
  CHECK_THROWS_WITH(parseFields(nullptr, 0, "layer dcn_7"), "layer dcn_7: missing field");
}

void testUnknownFieldIsAWarning() {
  Fields f = typicalFields();
  f.add("strides", {2, 2});
  ParsedFields p = parse(f);
  CHECK(p.warnings.size() == 1);
  CHECK(!p.warnings.empty() && p.warnings[0].find("ignored unknown field 'strides'") != std::string::npos);
  CHECK(p.attributes.value(Attribute::kStride) == 1);
}

void testSerializationRoundTrip() {
  Fields f;
  f.ints(Attribute::kStride, {2})
      .ints(Attribute::kPadding, {0, 1})
      .ints(Attribute::kDilation, {3, 2})
      .ints(Attribute::kGroups, {2})
      .ints(Attribute::kDeformableGroup, {2});
  DcnAttributes const built = parse(f).attributes;
  std::vector<FieldView> serialized = serializeFields(built);
  CHECK(static_cast<int32_t>(serialized.size()) == contract::kAttributeCount);
  for (int32_t i = 0; i < static_cast<int32_t>(serialized.size()); ++i) {
    CHECK(std::strcmp(serialized[i].name, contract::kAttributes[i].name) == 0);
    CHECK(serialized[i].type == FieldType::kInt32);
    CHECK(serialized[i].length == serializedLength(contract::kAttributes[i].kind));
  }
  // The runtime phase parses exactly what was serialized, into equal attributes.
  DcnAttributes const runtime =
      parseFields(serialized.data(), static_cast<int32_t>(serialized.size()), "runtime").attributes;
  CHECK(runtime == built);
  CHECK(runtime.value(Attribute::kStride, 1) == 2);
  CHECK(runtime.value(Attribute::kDilation, 0) == 3 && runtime.value(Attribute::kDilation, 1) == 2);
  // Serializing copies nothing: the views point into the attributes object.
  CHECK(serialized[static_cast<int>(Attribute::kStride)].data == built.data(Attribute::kStride));
}

void testOutputExtentArithmetic() {
  IntArith a;
  CHECK(a.floorDiv(7, 2) == 3);
  CHECK(a.floorDiv(-1, 2) == -1);
  CHECK(a.floorDiv(-4, 2) == -2);
  CHECK(a.add(kUnknownDim, 3) == kUnknownDim);
  // brute force against the textbook formula (positive room only: real convolutions)
  for (int64_t in = 1; in <= 40; ++in) {
    for (int64_t k = 1; k <= 5; ++k) {
      for (int32_t s = 1; s <= 3; ++s) {
        for (int32_t p = 0; p <= 2; ++p) {
          for (int32_t d = 1; d <= 3; ++d) {
            int64_t const room = in + 2 * p - (d * (k - 1) + 1);
            if (room < 0) {
              continue;
            }
            CHECK(convOutputExtent(a, in, k, s, p, d) == room / s + 1);
          }
        }
      }
    }
  }
  CHECK(convOutputExtent(a, 512, 3, 2, 1, 1) == 256);
  CHECK(convOutputExtent(a, 2, 5, 1, 0, 1) <= 0);  // caller reports an empty output
  CHECK(convOutputExtent(a, kUnknownDim, 3, 1, 1, 1) == kUnknownDim);
}

void testInputShapeChecks() {
  DcnAttributes attrs = parse(typicalFields()).attributes;
  // 3x3, dg 1: offset 18 channels, mask 9
  std::vector<Shape> ok = {shape({2, 16, 10, 12}), shape({2, 18, 10, 12}), shape({2, 9, 10, 12}),
                           shape({32, 16, 3, 3}), shape({32})};
  Shape out = checkInputShapes(attrs, ok.data(), 5, "t");
  CHECK(out.nbDims == 4 && out.d[0] == 2 && out.d[1] == 32 && out.d[2] == 10 && out.d[3] == 12);
  CHECK(describe(out) == "[2, 32, 10, 12]");
  // bias is optional
  CHECK(checkInputShapes(attrs, ok.data(), 4, "t").d[1] == 32);

  auto broken = [&](int32_t input, Shape s) {
    std::vector<Shape> v = ok;
    v[input] = s;
    return v;
  };
  auto check = [&](std::vector<Shape> const& v) { return checkInputShapes(attrs, v.data(), 5, "t"); };
  CHECK_THROWS_WITH(check(broken(1, shape({2, 17, 10, 12}))),
                    "offset.shape[1] is not valid: got: 17 expected: 18");
  CHECK_THROWS_WITH(check(broken(2, shape({2, 9, 10, 11}))), "mask.shape[3] is not valid: got: 11 expected: 12");
  CHECK_THROWS_WITH(check(broken(1, shape({3, 18, 10, 12}))), "offset.shape[0] is not valid: got: 3 expected: 2");
  CHECK_THROWS_WITH(check(broken(3, shape({32, 8, 3, 3}))), "weight.shape[1] is not valid: got: 8 expected: 16");
  CHECK_THROWS_WITH(check(broken(4, shape({31}))), "bias.shape[0] is not valid: got: 31 expected: 32");
  CHECK_THROWS_WITH(check(broken(4, shape({32, 1}))), "bias must have 1 dims");
  CHECK_THROWS_WITH(check(broken(0, shape({16, 10, 12}))), "input must have 4 dims: got: [16, 10, 12]");
  CHECK_THROWS_WITH(checkInputShapes(attrs, ok.data(), 3, "t"), "expected 4 or 5 inputs");
  CHECK_THROWS_WITH(checkInputShapes(attrs, ok.data(), 6, "t"), "got: 6");
  // the output would be empty
  CHECK_THROWS_WITH(check(broken(3, shape({32, 16, 25, 3}))), "the output would be empty");

  // groups / deformable groups
  Fields grouped;
  grouped.ints(Attribute::kStride, {2})
      .ints(Attribute::kPadding, {1})
      .ints(Attribute::kDilation, {1})
      .ints(Attribute::kGroups, {3})
      .ints(Attribute::kDeformableGroup, {2});
  DcnAttributes g = parse(grouped).attributes;
  std::vector<Shape> v = {shape({1, 12, 9, 9}), shape({1, 36, 5, 5}), shape({1, 18, 5, 5}), shape({6, 4, 3, 3})};
  CHECK(checkInputShapes(g, v.data(), 4, "t").d[2] == 5);
  v[0] = shape({1, 10, 9, 9});
  CHECK_THROWS_WITH(checkInputShapes(g, v.data(), 4, "t"), std::string("input channels (10) is not divisible by ") + nameOf(Attribute::kGroups) + " (3)");

  // unknown dims (build time, dynamic batch and spatial) are skipped, and stay unknown
  std::vector<Shape> dyn = {shape({-1, 16, -1, -1}), shape({-1, 18, -1, -1}), shape({-1, 9, -1, -1}),
                            shape({32, 16, 3, 3}), shape({32})};
  Shape dynOut = checkInputShapes(attrs, dyn.data(), 5, "t");
  CHECK(dynOut.d[0] == kUnknownDim && dynOut.d[1] == 32 && dynOut.d[2] == kUnknownDim);
  CHECK(describe(dynOut) == "[?, 32, ?, ?]");
  dyn[1] = shape({-1, 27, -1, -1});
  CHECK_THROWS_WITH(checkInputShapes(attrs, dyn.data(), 5, "t"), "offset.shape[1] is not valid: got: 27");
}

void testGeometry() {
  Fields f;
  f.ints(Attribute::kStride, {2, 1})
      .ints(Attribute::kPadding, {1, 2})
      .ints(Attribute::kDilation, {1, 2})
      .ints(Attribute::kGroups, {1})
      .ints(Attribute::kDeformableGroup, {1});
  DcnAttributes attrs = parse(f).attributes;
  // H: (9 + 2 - 3)/2 + 1 = 5; W: (8 + 4 - 5)/1 + 1 = 8
  std::vector<Shape> v = {shape({3, 4, 9, 8}), shape({3, 18, 5, 8}), shape({3, 9, 5, 8}), shape({5, 4, 3, 3})};
  dcn::ConvGeometry g = makeGeometry(attrs, v.data(), 4, "t");
  CHECK(g.batch == 3 && g.in_channels == 4 && g.height == 9 && g.width == 8);
  CHECK(g.out_channels == 5 && g.kernel_h == 3 && g.kernel_w == 3);
  CHECK(g.stride_h == 2 && g.stride_w == 1 && g.pad_h == 1 && g.pad_w == 2);
  CHECK(g.dilation_h == 1 && g.dilation_w == 2 && g.groups == 1 && g.deformable_groups == 1);
  CHECK(g.out_height == 5 && g.out_width == 8);
  v[0].d[0] = kUnknownDim;
  v[1].d[0] = kUnknownDim;
  v[2].d[0] = kUnknownDim;
  CHECK_THROWS_WITH(makeGeometry(attrs, v.data(), 4, "t"), "batch must be known");
}

void testProfileGeometriesCoverEveryBatch() {
  DcnAttributes attrs = parse(typicalFields()).attributes;
  auto shapesAt = [](int64_t batch, int64_t size) {
    return std::vector<Shape>{shape({batch, 8, size, size}), shape({batch, 18, size, size}),
                              shape({batch, 9, size, size}), shape({8, 8, 3, 3}), shape({8})};
  };
  std::vector<Shape> low = shapesAt(1, 8), opt = shapesAt(2, 16), high = shapesAt(3, 32);
  std::vector<dcn::ConvGeometry> g = profileGeometries(attrs, low.data(), opt.data(), high.data(), 5, "t");
  // the max problem, then batches 1..3 at each of the three spatial corners
  CHECK(g.size() == 1 + 3 * 3);
  CHECK(g[0].batch == 3 && g[0].height == 32);
  for (int64_t b = 1; b <= 3; ++b) {
    for (int size : {8, 16, 32}) {
      bool found = false;
      for (auto const& x : g) {
        found = found || (x.batch == b && x.height == size && x.out_height == size);
      }
      CHECK(found);
    }
  }
  // a huge batch range is sampled, ends included
  std::vector<Shape> big = shapesAt(5000, 32);
  g = profileGeometries(attrs, low.data(), opt.data(), big.data(), 5, "t");
  CHECK(g.size() <= 1 + 3 * (kMaxProfileBatches + 1));
  bool hasOne = false, hasMax = false;
  for (auto const& x : g) {
    hasOne = hasOne || x.batch == 1;
    hasMax = hasMax || x.batch == 5000;
  }
  CHECK(hasOne && hasMax);
  // an invalid largest problem is an error, not a silent 0
  std::vector<Shape> broken = shapesAt(3, 32);
  broken[1].d[1] = 17;
  CHECK_THROWS_WITH(profileGeometries(attrs, low.data(), opt.data(), broken.data(), 5, "t"), "got: 17");
}

void testKeepPackedWeightsSetting() {
  CHECK(!keepPackedWeights(nullptr, "t"));
  CHECK(!keepPackedWeights("", "t"));
  CHECK(!keepPackedWeights("0", "t"));
  CHECK(keepPackedWeights("1", "t"));
  CHECK_THROWS_WITH(keepPackedWeights("yes", "t"), contract::kKeepPackedWeightsEnv);
  CHECK_THROWS_WITH(keepPackedWeights("yes", "t"), "is 'yes'");
  CHECK_THROWS_WITH(keepPackedWeights("10", "t"), "expected 1");
}

}  // namespace

int main() {
  testAttributeListFollowsContract();
  testParsesPairsAndScalars();
  testParsesInt64Fields();
  testRejectsBadFields();
  testUnknownFieldIsAWarning();
  testSerializationRoundTrip();
  testOutputExtentArithmetic();
  testInputShapeChecks();
  testGeometry();
  testProfileGeometriesCoverEveryBatch();
  testKeepPackedWeightsSetting();
  std::printf("%d checks, %d failures\n", gChecks, gFailures);
  return gFailures == 0 ? 0 : 1;
}
