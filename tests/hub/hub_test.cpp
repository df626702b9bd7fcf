// Repo references and the cache location, as huggingface_hub reads them (the downloads themselves are tested
// against a mock hub in tests/js/hub.test.mjs).
#include <gtest/gtest.h>

#include <cstdlib>

#include "hub/hub.h"

using namespace optiq;

namespace {

TEST(Hub, ParsesRepoReferences) {
  auto r = hub::parse_repo_ref("mlx-community/Qwen3.5-9B-OptiQ-4bit");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo_id, "mlx-community/Qwen3.5-9B-OptiQ-4bit");
  EXPECT_EQ(r->revision, "main");
  EXPECT_EQ(r->file, "");
  r = hub::parse_repo_ref("org/name@v1.0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->revision, "v1.0");
  r = hub::parse_repo_ref("unsloth/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q4_K_M.gguf");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo_id, "unsloth/Qwen3-0.6B-GGUF");
  EXPECT_EQ(r->file, "Qwen3-0.6B-Q4_K_M.gguf");
  r = hub::parse_repo_ref("org/name@0123456789abcdef0123456789abcdef01234567/sub/model.gguf");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->revision, "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(r->file, "sub/model.gguf");
  // Paths and malformed ids are not repo references.
  for (const char* bad : {"/abs/path", "./rel/dir", "model.gguf", "a/b/c", "org/", "/org/name", "org/../x", "org/name@", "o rg/name"})
    EXPECT_FALSE(hub::parse_repo_ref(bad)) << bad;
}

TEST(Hub, CacheLocationFollowsHuggingFaceHubsEnvironment) {
  ::setenv("HOME", "/home/u", 1);
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HF_HOME");
  ::unsetenv("HF_HUB_CACHE");
  ::unsetenv("HUGGINGFACE_HUB_CACHE");
  ::unsetenv("HF_ENDPOINT");
  ::unsetenv("HF_HUB_OFFLINE");
  auto c = hub::HubConfig::from_env();
  EXPECT_EQ(c.cache_dir, "/home/u/.cache/huggingface/hub");
  EXPECT_EQ(c.endpoint, "https://huggingface.co");
  EXPECT_FALSE(c.offline);
  EXPECT_EQ(hub::repo_folder(c, "mlx-community/Qwen3-0.6B-4bit"), "/home/u/.cache/huggingface/hub/models--mlx-community--Qwen3-0.6B-4bit");
  ::setenv("HF_HOME", "/data/hf", 1);
  EXPECT_EQ(hub::HubConfig::from_env().cache_dir, "/data/hf/hub");
  ::setenv("HF_HUB_CACHE", "/fast/hub", 1);
  ::setenv("HF_ENDPOINT", "http://mirror.local/", 1);
  ::setenv("HF_HUB_OFFLINE", "1", 1);
  c = hub::HubConfig::from_env();
  EXPECT_EQ(c.cache_dir, "/fast/hub");
  EXPECT_EQ(c.endpoint, "http://mirror.local");
  EXPECT_TRUE(c.offline);
  for (const char* k : {"HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE"}) ::unsetenv(k);
}

TEST(Hub, AnExistingPathIsUsedAsItIs) {
  hub::HubConfig c;
  c.offline = true;
  EXPECT_EQ(hub::resolve("/", hub::Kind::Model, c), "/");
  // Not a repo id and not there: handed back for the loader's own "no such model" error.
  EXPECT_EQ(hub::resolve("/no/such/model", hub::Kind::Model, c), "/no/such/model");
}

}  // namespace
