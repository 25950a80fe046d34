// Signed chat in live swarms (docs/protocol.md §3, "chat").
//
// A viewer signs each chat line with the ECDSA P-256 key of its identity
// (transport::Identity) over
//
//   SHA-256( "oa_live chat" || content id (20 bytes) || timestamp_ms (i64
//            big-endian) || text )
//
// so a line cannot be moved to another broadcast, re-dated or altered, and
// its sender is its public key.  Every peer admits a line through its
// ChatLog before showing or relaying it: the log refuses lines older than an
// hour or more than a minute ahead of the local clock, longer than 512
// bytes, more than 5 per 10 s from one key, already seen, or badly signed,
// and keeps one hour of accepted lines as the history new viewers get.
//
// Threads: ChatSigner::sign and verify_chat may be called from any thread
// (the signer holds a mutex around its mbedTLS context).  ChatLog is a
// loop-thread object without locks: use each one from a single thread.
// Errors: ChatSigner's constructor and sign, and sign_chat, throw
// openace::Error(INVAL, "live", "chat", ...); verify_chat and ChatLog never
// throw (except std::bad_alloc).
#pragma once

#include "live/live_descriptor.hpp"
#include "transport/live_wire.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace openace::live {

inline constexpr std::int64_t kChatHistoryMs = 60 * 60 * 1000; // kept, and the oldest accepted
inline constexpr std::int64_t kChatMaxAheadMs = 60 * 1000;     // clock skew allowed
inline constexpr std::int64_t kChatRateWindowMs = 10 * 1000;
inline constexpr std::size_t kChatRateLimit = 5;        // accepted lines per key per window
inline constexpr std::size_t kMaxChatHistory = 10000;   // lines kept at most

// Signs chat lines with one key, parsed once.  Movable, not copyable; a
// moved-from signer may only be destroyed or assigned to.
class ChatSigner {
public:
    // key_pem: an ECDSA P-256 private key (PEM, as transport::Identity::key_pem).
    // Throws Error(INVAL, "live", "chat", ...) when it is unreadable or not
    // P-256, or when no random generator can be seeded.
    explicit ChatSigner(const std::string &key_pem);
    ~ChatSigner();
    ChatSigner(ChatSigner &&) noexcept;
    ChatSigner &operator=(ChatSigner &&) noexcept;

    // The key's SubjectPublicKeyInfo (DER): the sender in every signed line.
    const std::string &public_key_der() const noexcept;

    // A signed line for the broadcast `id`.  Throws Error(INVAL, "live",
    // "chat", ...) for text that is empty, over 512 bytes or not UTF-8
    // (and INTERNAL only if mbedTLS fails to sign).
    transport::wire::LiveChat sign(const ContentId &id, std::int64_t timestamp_ms, std::string_view text) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// One-off form of ChatSigner(key_pem).sign(id, timestamp_ms, text): parses
// the key on every call, so keep a ChatSigner for repeated lines.
transport::wire::LiveChat sign_chat(const std::string &key_pem, const ContentId &id, std::int64_t timestamp_ms,
                                    std::string_view text);

// True when `c` is well formed (key 1..1024 bytes, an ECDSA P-256 public key;
// text 1..512 bytes of UTF-8; signature 1..80 bytes) and its signature by
// c.public_key_der over (id, timestamp, text) verifies.  Never throws.
bool verify_chat(const transport::wire::LiveChat &c, const ContentId &id) noexcept;

// {"from": 16 hex digits naming the sender's key, "timestamp_ms", "text"}:
// how jobs report a chat line.
nlohmann::json chat_line_json(const transport::wire::LiveChat &c);

enum class ChatVerdict {
    New,          // accepted: show it and relay it to the other peers
    Duplicate,    // already in the history (same key, timestamp and text)
    TooOld,       // older than an hour, or more than a minute in the future
    TooLong,      // text over 512 bytes
    RateLimited,  // its key already had 5 lines accepted in the last 10 s
    BadSignature, // malformed, or not signed by its key for this content id
};
// "new", "duplicate", "too old", "too long", "rate limited", "bad signature".
const char *to_string(ChatVerdict v) noexcept;

// The chat history of one broadcast and the admission of new lines.
class ChatLog {
public:
    // max_lines: how many lines to keep at most (kMaxChatHistory; smaller in tests).
    explicit ChatLog(std::size_t max_lines = kMaxChatHistory) : max_lines_(max_lines > 0 ? max_lines : 1) {}

    // Judges `c` for the broadcast `id` at the local wall-clock time now_ms
    // (unix ms) and keeps it when New.  A line is the same line when its
    // key, timestamp and text are (whatever the signature: an ECDSA
    // signature can be altered into another valid one by anyone).  Checks, in this order: length,
    // age, form, duplicate, rate, signature (the expensive check last; only
    // accepted lines count towards a key's rate, so forged lines in someone
    // else's name cannot silence them).  Every call first forgets lines
    // with a timestamp older than now_ms - 1 h; when max_lines are kept, the
    // one with the oldest timestamp goes (a New line older than all kept ones
    // is judged New but not kept).  The rate is counted by arrival
    // (now_ms), not by the sender's timestamps, which the sender chooses.
    ChatVerdict add(const transport::wire::LiveChat &c, const ContentId &id, std::int64_t now_ms);

    // The kept lines, oldest timestamp first (ties in a fixed order).
    std::vector<transport::wire::LiveChat> history() const;
    std::size_t size() const noexcept { return lines_.size(); }

private:
    using Digest = std::array<std::uint8_t, 32>; // SHA-256 of the encoded line without
                                                 // its signature field
    struct Key {
        std::int64_t timestamp_ms;
        Digest digest;
        bool operator<(const Key &o) const noexcept
        {
            return timestamp_ms != o.timestamp_ms ? timestamp_ms < o.timestamp_ms : digest < o.digest;
        }
    };

    void expire(std::int64_t now_ms);
    bool rate_limited(const std::string &key_der) const;
    void admit(const transport::wire::LiveChat &c, const Digest &digest, std::int64_t now_ms);

    std::size_t max_lines_;
    std::map<Key, transport::wire::LiveChat> lines_; // the history, oldest first; a
                                                     // duplicate has the same key
    std::deque<std::pair<std::int64_t, std::string>> arrivals_; // (now_ms, key) of recent accepts
    std::map<std::string, std::size_t> recent_;                 // key -> entries in arrivals_
};

} // namespace openace::live
