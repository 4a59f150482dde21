// Writes the seed inputs of every fuzz target from real encodings: a real
// manifest, real chunks, real NBD requests, a real account object, the
// example kiosk configuration. Run once by hand (see README.md); the fuzzers
// then grow the corpora from these seeds and -merge=1 keeps them small.
//
//   make_seeds <tests/fuzz/corpus> <packaging/kiosk.conf.example>
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "disk/nbd_protocol.h"
#include "parcel/parcel.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace isr;

namespace {

std::filesystem::path g_root;

void write(const std::string& target, const std::string& name, ByteView bytes) {
    std::filesystem::create_directories(g_root / target);
    std::ofstream out(g_root / target / ("seed-" + name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
void write(const std::string& target, const std::string& name, std::string_view text) {
    write(target, name, asBytes(text));
}
Bytes cat(std::initializer_list<ByteView> parts) {
    Bytes out;
    for (ByteView p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}
Bytes be32(std::uint32_t v) {
    Bytes b(4);
    putBe32(b.data(), v);
    return b;
}

Bytes pattern(std::size_t n, unsigned seed) {
    Bytes b(n);
    std::uint32_t s = seed;
    for (auto& x : b) {
        s = s * 1103515245u + 12345u;
        x = std::uint8_t(s >> 24);
    }
    return b;
}

void manifestSeeds() {
    const Bytes secret(32, 7);
    parcel::Manifest m;
    m.version = 3;
    m.parent = 2;
    m.created = 1700000000;
    m.kiosk = "kiosk-1";
    m.chunkSize = 4096;
    m.diskSize = 4 * 4096 + 1024;
    m.disk.resize(m.chunkCount());
    m.disk[0] = chunk::encode(secret, pattern(4096, 1)).ref;
    m.disk[2] = chunk::encode(secret, Bytes(4096, 'a')).ref;
    m.disk[4] = chunk::encode(secret, pattern(1024, 2)).ref;
    m.memory.push_back(chunk::encode(secret, pattern(3000, 3)).ref);
    m.workingSet = {0, 2, 4};
    write("manifest", "three-chunks", parcel::encodeManifest(m));
    // Lazy memory (format 2): 64 MiB of RAM in 4 KiB chunks, two stored.
    parcel::Manifest lazy = m;
    lazy.vm.memoryMiB = 64;
    lazy.ram.resize(lazy.ramChunkCount());
    lazy.ram[1] = chunk::encode(secret, pattern(4096, 4)).ref;
    lazy.ram[16383] = chunk::encode(secret, pattern(4096, 5)).ref;
    lazy.ramHotSet = {16383, 1};
    write("manifest", "lazy-memory", parcel::encodeManifest(lazy));
    // Format 3: the RAM in 8 KiB chunks of its own, one stored.
    parcel::Manifest own = lazy;
    own.ramChunkSize = 8192;
    own.ram.assign(own.ramChunkCount(), std::nullopt);
    own.ram[8191] = chunk::encode(secret, pattern(8192, 6)).ref;
    own.ramHotSet = {8191};
    write("manifest", "ram-chunk-size", parcel::encodeManifest(own));

    parcel::Manifest empty;
    empty.version = 1;
    empty.diskSize = 512;
    empty.disk.resize(empty.chunkCount());
    empty.vm.boot = "demo-guest";
    write("manifest", "version-1", parcel::encodeManifest(empty));
    write("manifest", "vmspec", m.vm.toJson().dump());
}

void accountSeeds() {
    parcel::AccountObject account;
    account.user = "alice";
    account.kdf = crypto::KdfParams::minimal();
    account.kdf.salt = pattern(crypto::kSaltSize, 4);
    // Opaque to the parser; fixed so re-running the generator changes nothing.
    account.sealed = pattern(24 + 72 + 16, 10);
    write("account", "alice", parcel::encodeAccountObject(account));
    // Built-object mode: 0x01, then fields (see fuzz_account.cpp).
    write("account", "built",
          cat({Bytes{0x01, 0, 0, 1}, pattern(16, 5), Bytes{5, 0, 0, 0, 40, 1}, asBytes("alice"),
               pattern(40, 6)}));
}

void chunkSeeds() {
    const Bytes secret(32, 9);
    for (auto [name, plain] : {std::pair{"raw", pattern(300, 7)}, {"zstd", Bytes(5000, 'z')}}) {
        chunk::EncodedChunk c = chunk::encode(secret, plain);
        Bytes len = be32(c.ref.length);
        // mode 0: ref || ciphertext, with the name fixed up
        write("chunk", std::string("ref-") + name,
              cat({Bytes{0}, c.ref.name, c.ref.key, len, Bytes{1}, c.ciphertext}));
        // mode 1: tag, key, length, body (the decrypted body of the real chunk)
        Bytes ad = toBytes("isr-chunk-v1");
        ad.push_back(c.ciphertext[0]);
        auto body = crypto::decryptConvergent(c.ref.key, ByteView(c.ciphertext).subspan(1), ad);
        write("chunk", std::string("body-") + name,
              cat({Bytes{1, std::uint8_t(c.ciphertext[0] == 2 ? 1 : 0)}, c.ref.key, len, *body}));
        // mode 2: secret, flip position and value, what, plaintext
        write("chunk", std::string("roundtrip-") + name,
              cat({Bytes{2}, secret, Bytes{0, 0, 0, 9, 0x40, 0}, plain}));
    }
}

void nbdSeeds() {
    using namespace disk::nbd;
    Request read{0, kCmdRead, 1, 4096, 512};
    Request write_{kCmdFlagFua, kCmdWrite, 2, 0, 4096};
    Request zeroes{kCmdFlagNoHole, kCmdWriteZeroes, 3, 8192, 8192};
    Request flush{0, kCmdFlush, 4, 0, 0};
    int i = 0;
    for (const Request& r : {read, write_, zeroes, flush}) {
        Bytes header = encodeRequest(r);
        write("nbd", "request-" + std::to_string(i), cat({Bytes{0}, header}));
        // check mode: size (8), small-size flag, maxPayload, minimum shift, read-only, header
        Bytes limits(8);
        putBe64(limits.data(), 1 << 20);
        write("nbd", "check-" + std::to_string(i),
              cat({Bytes{1}, limits, Bytes{1}, be32(32u << 20), Bytes{9, std::uint8_t(i == 1)},
                   header}));
        ++i;
    }
    write("nbd", "info-go",
          cat({Bytes{2}, encodeInfoRequest({"disk", {kInfoExport, kInfoBlockSize}})}));
    write("nbd", "info-empty", cat({Bytes{2}, encodeInfoRequest({"", {}})}));
}

void cdcSeeds() {
    Bytes data = pattern(5000, 8);
    // A repeated region, so cut points repeat too.
    data.insert(data.end(), data.begin() + 1000, data.begin() + 3000);
    write("cdc", "small-params", cat({Bytes{0, 2, 0, 100, 1, 0}, pattern(8, 9), be32(77), data}));
    write("cdc", "zeros", cat({Bytes{0, 0, 0, 0, 0, 0}, Bytes(8, 0), be32(5), Bytes(3000, 0)}));
    write("cdc", "bad-params", cat({Bytes{0x80}, be32(64), be32(100), be32(1000)}));
}

void jsonSeeds() {
    write("json", "store-marker",
          R"({"created":1700000000,"format":1,"kdf":{"mem":268435456,"ops":3}})");
    write("json", "lock",
          R"({"heartbeat":1700000100,"kiosk":"kiosk-1","session":"a1b2","since":1700000000})");
    write("json", "mixed", R"([null,true,false,-0,1.5e300,"a\u00e9\n\"",{"":[[]]}])");
}

void kioskSeeds(const std::string& examplePath) {
    std::ifstream in(examplePath);
    std::stringstream text;
    text << in.rdbuf();
    write("kioskconfig", "example", text.str());
    write("kioskconfig", "all-keys",
          "store = s3s://rgw.example:7480/isr/kiosks\n"
          "state_dir = /var/lib/isr\nscratch_dir = /run/isr\ncache_size = 8G\n"
          "hoard_bandwidth = 10M\nidle_timeout = 600\nidle_warning = 30\n"
          "escape_chord = Ctrl+Alt+Shift+Q\naccelerator = tcg\ndevice_allow_list =\n"
          "virtual_keyboard = yes\nkiosk_id = lobby-1\nparcel = default\n");
    write("kioskconfig", "size", "16T");
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR KIOSK_CONF_EXAMPLE\n", argv[0]);
        return 2;
    }
    g_root = argv[1];
    manifestSeeds();
    accountSeeds();
    chunkSeeds();
    nbdSeeds();
    cdcSeeds();
    jsonSeeds();
    kioskSeeds(argv[2]);
    return 0;
}
