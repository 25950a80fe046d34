#include "live/live_descriptor.hpp"

#include "core/error.hpp"
#include "core/hex.hpp"
#include "core/sha1.hpp"
#include "transport/bencode.hpp"

#include <mbedtls/pk.h>

#include <cmath>

namespace openace::live {

namespace bencode = transport::bencode;

namespace {

constexpr std::int64_t kVersion = 1;
constexpr std::string_view kFields[] = {"created", "name", "piece duration ms", "public key", "version"};

[[noreturn]] void field_error(std::string_view field, const std::string &why)
{
    throw_errorf(Errc::PARSE, "live", "descriptor", "field '{}': {}", field, why);
}

const bencode::Value &field(const bencode::Value &dict, std::string_view name, bencode::Value::Type type)
{
    const bencode::Value *v = dict.find(name);
    if (v == nullptr)
        field_error(name, "missing");
    if (v->type() != type)
        field_error(name, type == bencode::Value::Type::Integer ? "expected an integer" : "expected a string");
    return *v;
}

bool is_p256_public_key(const std::string &der)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    bool ok = mbedtls_pk_parse_public_key(&pk, reinterpret_cast<const unsigned char *>(der.data()), der.size()) == 0 &&
              mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY &&
              mbedtls_pk_ec(pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
    mbedtls_pk_free(&pk);
    return ok;
}

void check_known_fields(const bencode::Value &dict)
{
    for (const auto &[key, value] : dict.as_dict()) {
        bool known = false;
        for (std::string_view f : kFields)
            known = known || key == f;
        if (!known)
            field_error(key.substr(0, 64), "unknown field");
    }
}

} // namespace

std::string LiveDescriptor::encode() const
{
    bencode::Dict d;
    d.emplace_back("created", created);
    d.emplace_back("name", name);
    d.emplace_back("piece duration ms", static_cast<std::int64_t>(std::llround(piece_duration * 1000.0)));
    d.emplace_back("public key", public_key_der);
    d.emplace_back("version", kVersion);
    return bencode::encode(bencode::Value(std::move(d)));
}

ContentId LiveDescriptor::content_id() const
{
    return core::Sha1::hash(encode());
}

LiveDescriptor parse_descriptor(std::string_view bencoded)
{
    if (bencoded.size() > kMaxDescriptorBytes)
        throw_errorf(Errc::PARSE, "live", "descriptor", "{} bytes, over the {} byte limit", bencoded.size(),
                     kMaxDescriptorBytes);
    bencode::Limits limits;
    limits.max_depth = 2;
    limits.max_size = kMaxDescriptorBytes;
    limits.max_items = 64;
    bencode::Value dict;
    try {
        dict = bencode::decode(bencoded, limits);
    } catch (const Error &e) {
        throw_error(Errc::PARSE, "live", "descriptor", e.detail());
    }
    if (!dict.is_dict())
        throw_error(Errc::PARSE, "live", "descriptor", "not a bencoded dictionary");
    check_known_fields(dict);
    using Type = bencode::Value::Type;
    if (field(dict, "version", Type::Integer).as_int() != kVersion)
        field_error("version", "unsupported (expected 1)");

    LiveDescriptor d;
    d.name = field(dict, "name", Type::String).as_string();
    if (d.name.empty() || d.name.size() > kMaxNameBytes)
        field_error("name", fmt::format("{} bytes, expected 1..{}", d.name.size(), kMaxNameBytes));
    d.public_key_der = field(dict, "public key", Type::String).as_string();
    if (d.public_key_der.size() > kMaxPublicKeyBytes)
        field_error("public key", fmt::format("{} bytes, over the {} byte limit", d.public_key_der.size(),
                                              kMaxPublicKeyBytes));
    if (!is_p256_public_key(d.public_key_der))
        field_error("public key", "not an ECDSA P-256 SubjectPublicKeyInfo");
    const std::int64_t ms = field(dict, "piece duration ms", Type::Integer).as_int();
    if (ms < std::llround(kMinPieceDuration * 1000) || ms > std::llround(kMaxPieceDuration * 1000))
        field_error("piece duration ms", fmt::format("{} ms, expected {}..{} ms", ms,
                                                     std::llround(kMinPieceDuration * 1000),
                                                     std::llround(kMaxPieceDuration * 1000)));
    d.piece_duration = static_cast<double>(ms) / 1000.0;
    d.created = field(dict, "created", Type::Integer).as_int();
    if (d.created < 0)
        field_error("created", fmt::format("{} is negative", d.created));
    return d;
}

std::string to_hex(const ContentId &id)
{
    return core::to_hex(id.data(), id.size());
}

ContentId parse_content_id(std::string_view text)
{
    std::string_view hex = text;
    for (std::string_view prefix : {std::string_view("acestream://"), std::string_view("acestream:?content_id=")}) {
        if (hex.starts_with(prefix)) {
            hex.remove_prefix(prefix.size());
            break;
        }
    }
    auto id = core::from_hex<20>(hex);
    if (!id)
        throw_errorf(Errc::INVAL, "live", "content id",
                     "'{}{}': expected 40 hex digits, acestream://<40 hex> or acestream:?content_id=<40 hex>",
                     text.substr(0, 100), text.size() > 100 ? "..." : "");
    return *id;
}

} // namespace openace::live
