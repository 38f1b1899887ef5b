// bench/tokenizer: single-thread encode and decode throughput (MB of text per second) of tandem's
// tokenizers on a few MB of mixed-language text, next to a peer's numbers measured in the same
// call (bench/peers/hf_tokenizer.py: Hugging Face tokenizers, and tiktoken for tiktoken files).
//
//   bench_tokenizer --make-corpus corpus.txt --data ../shared/data     (once; deterministic)
//   python3 bench/peers/hf_tokenizer.py --corpus corpus.txt --tokenizer llama3=DIR/tokenizer.json
//       --json-out peer.json
//   bench_tokenizer --corpus corpus.txt --tokenizer llama3=DIR/tokenizer.json
//       --peer-json peer.json --json-out bench_tokenizer.json
//
// The corpus is a list of documents separated by the line "\x1e" (record separator); each side
// encodes document by document without special tokens, then decodes each document's ids.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace {

namespace fs = std::filesystem;
using tandem::tokenizer::Tokenizer;
constexpr char kSeparator[] = "\n\x1e\n";

std::vector<std::string> SplitDocuments(const std::string& corpus) {
  std::vector<std::string> docs;
  size_t pos = 0;
  while (pos < corpus.size()) {
    size_t end = corpus.find(kSeparator, pos);
    if (end == std::string::npos) end = corpus.size();
    if (end > pos) docs.push_back(corpus.substr(pos, end - pos));
    pos = end + sizeof(kSeparator) - 1;
  }
  return docs;
}

// Real text from ../shared/data (license texts, data notes, the tokenizer test inputs, ShareGPT
// and trace files) and multilingual text decoded from random runs of a large vocabulary's word
// tokens, cut into documents of about 2 KB, to `target_bytes`.
int MakeCorpus(const fs::path& data, const fs::path& vocab_tokenizer, const fs::path& out,
               size_t target_bytes) {
  std::vector<std::string> real;
  for (const auto& dir : {data / "licenses", data / "tokenizers", data / "traces/sharegpt_sample",
                          data}) {
    if (!fs::exists(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      const auto ext = e.path().extension().string();
      // Prose only: templates and configs spell special tokens, which a rank-file peer without
      // special tokens would encode differently.
      if (e.is_regular_file() && (ext == ".txt" || ext == ".md" || ext == ".inp") &&
          e.file_size() < 200000) {
        files.push_back(e.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto text = tandem::ReadFileToString(f);
      if (text.ok() && !tandem::tokenizer::FindInvalidUtf8(*text)) real.push_back(*text);
    }
  }
  auto tok = tandem::tokenizer::LoadTokenizer(vocab_tokenizer);
  if (!tok.ok()) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  // Word-like tokens of the vocabulary: they carry every script the model was trained on.
  std::vector<int32_t> words;
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) {
    if ((*tok)->IsSpecial(id)) continue;
    auto text = (*tok)->Decode(std::vector<int32_t>{id}, false);
    if (text.ok() && text->size() >= 3 && !tandem::tokenizer::FindInvalidUtf8(*text) &&
        text->find("\xEF\xBF\xBD") == std::string::npos) {
      words.push_back(id);
    }
  }
  std::mt19937 rng(20261125);
  std::string corpus;
  size_t real_index = 0, real_pos = 0;
  while (corpus.size() < target_bytes) {
    std::string doc;
    if (rng() % 2 == 0 && !real.empty()) {
      const std::string& src = real[real_index % real.size()];
      doc = src.substr(real_pos, 2048);
      real_pos += 2048;
      if (real_pos >= src.size()) {
        real_pos = 0;
        ++real_index;
      }
      // Keep whole characters at the cut.
      while (!doc.empty() && tandem::tokenizer::FindInvalidUtf8(doc)) doc.pop_back();
    } else {
      std::vector<int32_t> ids;
      while (ids.size() < 600) ids.push_back(words[rng() % words.size()]);
      doc = *(*tok)->Decode(ids, false);
    }
    if (doc.empty()) continue;
    corpus += doc;
    corpus += kSeparator;
  }
  std::ofstream(out, std::ios::binary) << corpus;
  std::printf("wrote %s: %zu bytes\n", out.c_str(), corpus.size());
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("tokenizer throughput");
  std::string make_corpus, corpus_path, data = "../shared/data", vocab, json_out, peer_json;
  std::vector<std::string> tokenizers;
  int repeats = 5;
  size_t corpus_bytes = 4 << 20;
  app.add_option("--make-corpus", make_corpus, "Write the benchmark corpus to this file");
  app.add_option("--data", data, "shared/data folder (for --make-corpus)");
  app.add_option("--vocab-tokenizer", vocab, "Tokenizer whose words make the multilingual part");
  app.add_option("--corpus-bytes", corpus_bytes);
  app.add_option("--corpus", corpus_path);
  app.add_option("--tokenizer", tokenizers, "NAME=PATH, repeatable");
  app.add_option("--repeats", repeats);
  app.add_option("--peer-json", peer_json, "Peer results to compare with");
  app.add_option("--json-out", json_out);
  CLI11_PARSE(app, argc, argv);

  if (!make_corpus.empty()) {
    if (vocab.empty()) vocab = (fs::path(data) / "tokenizers/qwen2/tokenizer.json").string();
    return MakeCorpus(data, vocab, make_corpus, corpus_bytes);
  }
  auto corpus = tandem::ReadFileToString(corpus_path);
  if (!corpus.ok()) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", corpus.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::string> docs = SplitDocuments(*corpus);
  size_t text_bytes = 0;
  for (const auto& d : docs) text_bytes += d.size();

  nlohmann::json peer = nlohmann::json::object();
  if (!peer_json.empty()) {
    std::ifstream in(peer_json);
    peer = nlohmann::json::parse(in, nullptr, false);
    if (peer.is_discarded()) peer = nlohmann::json::object();
  }

  nlohmann::json result;
  result["benchmark"] = "tokenizer";
  result["corpus_bytes"] = text_bytes;
  result["documents"] = docs.size();
  std::printf("bench_tokenizer corpus=%zu bytes in %zu documents, single thread, median of %d\n",
              text_bytes, docs.size(), repeats);
  std::printf("| tokenizer | tokens | encode MB/s | peer | ratio | decode MB/s | peer | ratio |"
              " same ids |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const std::string& spec : tokenizers) {
    const size_t eq = spec.find('=');
    const std::string name = spec.substr(0, eq);
    const std::string path = spec.substr(eq + 1);
    auto tok = tandem::tokenizer::LoadTokenizer(path);
    if (!tok.ok()) {
      std::fprintf(stderr, "bench_tokenizer: %s\n", tok.status().ToString().c_str());
      return 1;
    }
    std::vector<std::vector<int32_t>> ids(docs.size());
    std::vector<double> enc, dec;
    for (int r = 0; r < repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < docs.size(); ++i) ids[i] = *(*tok)->Encode(docs[i], false);
      auto t1 = std::chrono::steady_clock::now();
      size_t decoded = 0;
      for (size_t i = 0; i < docs.size(); ++i) decoded += (*tok)->Decode(ids[i], false)->size();
      auto t2 = std::chrono::steady_clock::now();
      enc.push_back(std::chrono::duration<double>(t1 - t0).count());
      dec.push_back(std::chrono::duration<double>(t2 - t1).count());
      (void)decoded;
    }
    size_t tokens = 0;
    for (const auto& v : ids) tokens += v.size();
    const double enc_mbs = text_bytes / 1e6 / Median(enc);
    const double dec_mbs = text_bytes / 1e6 / Median(dec);
    nlohmann::json row = {{"tokenizer", name},       {"path", path},
                          {"tokens", tokens},        {"encode_mb_per_s", enc_mbs},
                          {"decode_mb_per_s", dec_mbs}};
    double peer_enc = 0, peer_dec = 0;
    std::string same = "-";
    if (peer.contains(name)) {
      peer_enc = peer[name].value("encode_mb_per_s", 0.0);
      peer_dec = peer[name].value("decode_mb_per_s", 0.0);
      row["peer"] = peer[name];
      if (peer[name].contains("tokens")) {
        same = peer[name]["tokens"].get<size_t>() == tokens ? "yes" : "NO";
      }
      row["encode_ratio"] = peer_enc > 0 ? enc_mbs / peer_enc : 0;
      row["decode_ratio"] = peer_dec > 0 ? dec_mbs / peer_dec : 0;
    }
    std::printf("| %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", name.c_str(),
                tokens, enc_mbs, peer_enc, peer_enc > 0 ? enc_mbs / peer_enc : 0, dec_mbs,
                peer_dec, peer_dec > 0 ? dec_mbs / peer_dec : 0, same.c_str());
    result["rows"].push_back(row);
  }
  if (!json_out.empty()) std::ofstream(json_out) << result.dump(2) << "\n";
  return 0;
}
