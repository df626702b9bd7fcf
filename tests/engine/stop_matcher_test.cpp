#include <gtest/gtest.h>

#include "engine/stop_matcher.h"

using optiq::engine::StopMatcher;

TEST(StopMatcher, StopTextIsNotEmittedAcrossPieces) {
  StopMatcher m({"</end>"});
  std::string out;
  for (const char* p : {"Hello ", "wor", "ld</", "en", "d> tail"}) out += m.push(p);
  EXPECT_EQ(out, "Hello world");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(*m.matched(), "</end>");
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, HeldBackPrefixIsReleasedWhenItDiverges) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abc ST"), "abc ");
  EXPECT_EQ(m.push("OP? no: STAR"), "");  // "STOP" found at once
  EXPECT_TRUE(m.stopped());
  StopMatcher m2({"STOP"});
  EXPECT_EQ(m2.push("ST"), "");
  EXPECT_EQ(m2.push("AR"), "STAR");
  EXPECT_EQ(m2.push("S"), "");
  EXPECT_EQ(m2.flush(), "S");
  EXPECT_FALSE(m2.stopped());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"b", "a"});
  EXPECT_EQ(m.push("xxab"), "xx");
  EXPECT_EQ(*m.matched(), "a");
}

TEST(StopMatcher, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}
