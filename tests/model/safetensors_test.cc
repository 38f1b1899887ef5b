#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_files.h"

namespace tandem::model {
namespace {

using testing::Bf16Bytes;
using testing::ExpectError;
using testing::F16Bytes;
using testing::F32Bytes;
using testing::SafetensorsBytes;
using testing::SafetensorsWithHeader;
using testing::TempDir;
using testing::TestTensor;
using testing::WriteFile;

std::vector<float> ToF32(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.NumElements()));
  ConvertToF32(view, out);
  return out;
}

std::vector<TestTensor> SampleTensors() {
  return {
      {"a.f32", "F32", {2, 3}, F32Bytes({1, 2, 3, 4, 5, 6})},
      {"b.bf16", "BF16", {4}, Bf16Bytes({0.5f, -1.0f, 2.0f, 1024.0f})},
      {"c.f16", "F16", {1, 2}, F16Bytes({0.25f, -3.0f})},
      {"d.scalar", "F32", {}, F32Bytes({42.0f})},
      {"e.empty", "BF16", {0, 8}, ""},
  };
}

TEST(SafetensorsTest, ReadsEverySupportedDType) {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  WriteFile(path, SafetensorsBytes(SampleTensors(), {{"format", "pt"}}));
  StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsFile& f = **file;
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.TensorNames(),
            std::vector<std::string>({"a.f32", "b.bf16", "c.f16", "d.scalar", "e.empty"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");

  StatusOr<TensorView> a = f.Tensor("a.f32");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, std::vector<int64_t>({2, 3}));
  EXPECT_EQ(ToF32(*a), std::vector<float>({1, 2, 3, 4, 5, 6}));

  StatusOr<TensorView> b = f.Tensor("b.bf16");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(ToF32(*b), std::vector<float>({0.5f, -1.0f, 2.0f, 1024.0f}));

  StatusOr<TensorView> c = f.Tensor("c.f16");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dtype, DType::kF16);
  EXPECT_EQ(c->shape, std::vector<int64_t>({1, 2}));
  EXPECT_EQ(ToF32(*c), std::vector<float>({0.25f, -3.0f}));

  StatusOr<TensorView> d = f.Tensor("d.scalar");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->shape.empty());
  EXPECT_EQ(ToF32(*d), std::vector<float>({42.0f}));

  StatusOr<TensorView> e = f.Tensor("e.empty");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->NumElements(), 0);
  EXPECT_TRUE(e->bytes.empty());

  EXPECT_TRUE(f.Contains("a.f32"));
  EXPECT_FALSE(f.Contains("z"));
  ExpectError(f.Tensor("z").status(), StatusCode::kNotFound, {path.string(), "'z'"});
  EXPECT_EQ(f.DTypeNameOf("b.bf16"), "BF16");
  EXPECT_FALSE(f.DTypeNameOf("z").has_value());
}

TEST(SafetensorsTest, EmptyHeaderIsAnEmptyFile) {
  TempDir dir;
  WriteFile(dir / "x.safetensors", SafetensorsWithHeader("{}      "));
  StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(dir / "x.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->TensorNames().empty());
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  TempDir dir;
  const auto path = dir / "absent.safetensors";
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kNotFound, {path.string()});
}

TEST(SafetensorsTest, TruncatedFileIsDataLoss) {
  TempDir dir;
  const std::string full = SafetensorsBytes(SampleTensors());
  const auto path = dir / "model.safetensors";

  // Cut inside the data region: the last tensor with data runs past the end.
  WriteFile(path, full.substr(0, full.size() - 3));
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kDataLoss,
              {path.string(), "truncated", "'d.scalar'"});

  // Cut inside the header.
  WriteFile(path, full.substr(0, 20));
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kDataLoss,
              {path.string(), "truncated", "header length"});

  // Shorter than the length field, and empty.
  WriteFile(path, full.substr(0, 5));
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kDataLoss,
              {path.string(), "truncated"});
  WriteFile(path, "");
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kDataLoss,
              {path.string(), "truncated"});
}

TEST(SafetensorsTest, HugeHeaderLengthIsRefused) {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  std::string bytes(8, '\xff');  // Length 2^64 - 1.
  bytes += "{}";
  WriteFile(path, bytes);
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kDataLoss, {path.string()});
}

struct BadHeaderCase {
  std::string name;
  std::string header;
  std::string data;
  std::vector<std::string> parts;
};

class SafetensorsBadHeaderTest : public ::testing::TestWithParam<BadHeaderCase> {};

TEST_P(SafetensorsBadHeaderTest, IsInvalidArgumentNamingTheFile) {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  WriteFile(path, SafetensorsWithHeader(GetParam().header, GetParam().data));
  std::vector<std::string> parts = GetParam().parts;
  parts.push_back(path.string());
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kInvalidArgument, parts);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadHeaderTest,
    ::testing::Values(
        BadHeaderCase{"MalformedJson", R"({"a": {"dtype": "F32",)", "", {"malformed JSON"}},
        BadHeaderCase{"NotAnObject", "[1, 2, 3]", "", {"object"}},
        BadHeaderCase{"BinaryGarbage", std::string("\x01\x02\xff\xfe", 4), "", {"malformed"}},
        BadHeaderCase{"EntryNotAnObject", R"({"a": 5})", "", {"'a'"}},
        BadHeaderCase{"MissingDType",
                      R"({"a": {"shape": [1], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'dtype' is missing"}},
        BadHeaderCase{"DTypeNotAString",
                      R"({"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'dtype'"}},
        BadHeaderCase{"UnknownDType",
                      R"({"a": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'Q4_K'", "unsupported dtype"}},
        BadHeaderCase{"MissingShape",
                      R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'shape' is missing"}},
        BadHeaderCase{"NegativeDimension",
                      R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'shape'"}},
        BadHeaderCase{"OverflowingShape",
                      R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296],
                                "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'shape'", "too large"}},
        BadHeaderCase{"OffsetsNotAPair",
                      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",
                      std::string(4, '\0'),
                      {"'a'", "'data_offsets'"}},
        BadHeaderCase{"OffsetsReversed",
                      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})",
                      std::string(4, '\0'),
                      {"'a'", "'data_offsets'"}},
        BadHeaderCase{"SizeDisagreesWithShape",
                      R"({"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'),
                      {"'a'", "'data_offsets'", "spans 4 bytes", "needs 6"}},
        BadHeaderCase{"MetadataNotStrings",
                      R"({"__metadata__": {"format": 1}})",
                      "",
                      {"'__metadata__.format'"}},
        BadHeaderCase{"MetadataNotAnObject", R"({"__metadata__": [1]})", "", {"'__metadata__'"}}),
    [](const auto& info) { return info.param.name; });

TEST(SafetensorsTest, UnsupportedDTypeIsRefusedWhenAskedFor) {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  WriteFile(path, SafetensorsBytes({
                      {"ids", "I64", {2}, std::string(16, '\1')},
                      {"fp8", "F8_E4M3", {4}, std::string(4, '\1')},
                      {"w", "F32", {1}, F32Bytes({1.0f})},
                  }));
  StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Tensor("w").ok());
  ExpectError((*file)->Tensor("ids").status(), StatusCode::kInvalidArgument,
              {path.string(), "'ids'", "'I64'", "F32, F16, BF16"});
  ExpectError((*file)->Tensor("fp8").status(), StatusCode::kInvalidArgument,
              {path.string(), "'fp8'", "'F8_E4M3'"});
  EXPECT_EQ((*file)->DTypeNameOf("ids"), "I64");
}

TEST(SafetensorsTest, UnsupportedDTypeSizesAreStillChecked) {
  TempDir dir;
  const auto path = dir / "model.safetensors";
  WriteFile(path, SafetensorsWithHeader(
                      R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 8]}})",
                      std::string(8, '\0')));
  ExpectError(SafetensorsFile::Open(path).status(), StatusCode::kInvalidArgument,
              {path.string(), "'ids'", "needs 16"});
}

TEST(SafetensorsIndexTest, ParsesWeightMap) {
  StatusOr<std::map<std::string, std::string, std::less<>>> map = ParseSafetensorsIndex(
      R"({"metadata": {"total_size": 1234},
          "weight_map": {"a": "model-00001-of-00002.safetensors",
                         "b": "model-00002-of-00002.safetensors"}})",
      "idx.json");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->size(), 2u);
  EXPECT_EQ(map->at("a"), "model-00001-of-00002.safetensors");
  EXPECT_EQ(map->at("b"), "model-00002-of-00002.safetensors");
}

TEST(SafetensorsIndexTest, RejectsBadIndexes) {
  ExpectError(ParseSafetensorsIndex("{", "idx.json").status(), StatusCode::kInvalidArgument,
              {"idx.json", "malformed JSON"});
  ExpectError(ParseSafetensorsIndex(R"({"metadata": {}})", "idx.json").status(),
              StatusCode::kInvalidArgument, {"idx.json", "'weight_map' is missing"});
  ExpectError(ParseSafetensorsIndex(R"({"weight_map": []})", "idx.json").status(),
              StatusCode::kInvalidArgument, {"idx.json", "'weight_map'"});
  ExpectError(ParseSafetensorsIndex(R"({"weight_map": {"a": 3}})", "idx.json").status(),
              StatusCode::kInvalidArgument, {"idx.json", "'weight_map.a'"});
  ExpectError(ParseSafetensorsIndex(R"({"weight_map": {"a": ""}})", "idx.json").status(),
              StatusCode::kInvalidArgument, {"idx.json", "'weight_map.a'"});
  ExpectError(
      ParseSafetensorsIndex(R"({"weight_map": {"a": "../x.safetensors"}})", "idx.json").status(),
      StatusCode::kInvalidArgument, {"idx.json", "'weight_map.a'", "outside"});
  ExpectError(
      ParseSafetensorsIndex(R"({"weight_map": {"a": "/etc/x.safetensors"}})", "idx.json").status(),
      StatusCode::kInvalidArgument, {"idx.json", "'weight_map.a'", "outside"});
}

}  // namespace
}  // namespace tandem::model
