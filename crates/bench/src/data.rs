//! The data both sides of every workload use: one set of unique 16-character keys (UTF-8,
//! as cairn-store requires, and the same bytes for raw heed), a small pool of 100-byte
//! msgpack values, and a byte checksum that proves both sides read the same values.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::Rng;

/// Length of every key in bytes.
pub const KEY_BYTES: usize = 16;

/// Length of every value in bytes: a msgpack bin8 header (2 bytes) and its payload.
pub const VALUE_BYTES: usize = 100;

/// How many distinct values the keys share (key `i` gets value `i % VALUE_POOL`).
pub const VALUE_POOL: usize = 256;

/// msgpack `bin 8` marker: one length byte follows, then that many raw bytes.
const MSGPACK_BIN8: u8 = 0xc4;

const KEY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The keys and values of a run, generated once and shared by both sides.
pub struct Dataset {
    pub keys: Vec<String>,
    values: Vec<Vec<u8>>,
}

impl Dataset {
    /// `count` unique random keys and the value pool.
    pub fn generate(count: usize, rng: &mut impl Rng) -> Dataset {
        let mut seen = HashSet::with_capacity(count);
        let mut keys = Vec::with_capacity(count);
        while keys.len() < count {
            let key = random_key(rng);
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        Dataset::with_keys(keys, rng)
    }

    /// The keys `0000000000000000`, `0000000000000001`, … up to `count - 1` (decimal,
    /// `KEY_BYTES` digits, so that a URL pattern can pick existing keys at random) and
    /// the value pool.
    pub fn numbered(count: usize, rng: &mut impl Rng) -> Dataset {
        let keys = (0..count)
            .map(|number| format!("{number:0width$}", width = KEY_BYTES))
            .collect();
        Dataset::with_keys(keys, rng)
    }

    /// `keys` and a new value pool.
    fn with_keys(keys: Vec<String>, rng: &mut impl Rng) -> Dataset {
        let values = (0..VALUE_POOL).map(|_| msgpack_bin_value(rng)).collect();
        Dataset { keys, values }
    }

    /// The value stored under key number `index` (any index is accepted).
    pub fn value(&self, index: usize) -> &[u8] {
        &self.values[index % self.values.len()]
    }

    /// A value of the pool picked at random.
    pub fn random_value(&self, rng: &mut impl Rng) -> &[u8] {
        &self.values[rng.random_range(0..self.values.len())]
    }

    /// Every key index once, in random order.
    pub fn shuffled_indices(&self, rng: &mut impl Rng) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.shuffle(rng);
        order
    }

    /// The checksum of reading every key's value once, whatever the order.
    pub fn expected_checksum(&self) -> u64 {
        (0..self.keys.len()).fold(0, |sum, i| add_to_checksum(sum, self.value(i)))
    }
}

/// A random key of `KEY_BYTES` lowercase letters and digits.
pub fn random_key(rng: &mut impl Rng) -> String {
    (0..KEY_BYTES)
        .map(|_| char::from(KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())]))
        .collect()
}

/// A valid msgpack value of exactly `VALUE_BYTES` bytes: bin8 wrapping random bytes.
pub fn msgpack_bin_value(rng: &mut impl Rng) -> Vec<u8> {
    let payload = VALUE_BYTES - 2;
    let mut value = vec![0u8; VALUE_BYTES];
    value[0] = MSGPACK_BIN8;
    value[1] = u8::try_from(payload).expect("VALUE_BYTES fits a bin 8");
    rng.fill(&mut value[2..]);
    value
}

/// Adds every byte of `bytes` to `sum`; order-independent, so a scan and shuffled gets
/// of the same values agree.
pub fn add_to_checksum(sum: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(sum, |acc, &byte| acc.wrapping_add(u64::from(byte)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn values_are_one_msgpack_bin8_of_the_full_size() {
        let value = msgpack_bin_value(&mut StdRng::seed_from_u64(1));
        assert_eq!(value.len(), VALUE_BYTES);
        assert_eq!(value[0], 0xc4);
        assert_eq!(usize::from(value[1]), VALUE_BYTES - 2);
        cairn_store::validate_value(&value, VALUE_BYTES).expect("cairn-store accepts it");
    }

    #[test]
    fn keys_are_unique_lowercase_and_sixteen_bytes() {
        let data = Dataset::generate(1000, &mut StdRng::seed_from_u64(2));
        let unique: HashSet<&String> = data.keys.iter().collect();
        assert_eq!(unique.len(), 1000);
        for key in &data.keys {
            assert_eq!(key.len(), KEY_BYTES);
            assert!(key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
    }

    #[test]
    fn numbered_keys_are_sixteen_digits_in_order() {
        let data = Dataset::numbered(1000, &mut StdRng::seed_from_u64(5));
        assert_eq!(data.keys[0], "0000000000000000");
        assert_eq!(data.keys[999], "0000000000000999");
        assert!(data.keys.iter().all(|key| key.len() == KEY_BYTES));
        assert!(data.keys.is_sorted());
    }

    #[test]
    fn checksum_ignores_order() {
        let forward = add_to_checksum(add_to_checksum(0, &[1, 2]), &[250, 7]);
        let backward = add_to_checksum(add_to_checksum(0, &[250, 7]), &[1, 2]);
        assert_eq!(forward, 260);
        assert_eq!(forward, backward);
    }
}
