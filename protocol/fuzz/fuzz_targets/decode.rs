//! Fuzz target: any byte string must decode to a verified object or a typed error, never a
//! panic, and whatever decodes must re-encode to exactly the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvl_protocol::SignedObject;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = SignedObject::decode(data) {
        assert_eq!(object.bytes(), data);
    }
    for result in SignedObject::decode_batch(&[data, data]) {
        let _ = result;
    }
});
