//! Crafted and damaged JPEGs: every one gives a result or an error, never a panic, and sizes
//! are checked before anything is allocated by them.

use jpeg_tf::{decode_rgb, Error};
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/jpeg")
            .join(name),
    )
    .unwrap()
}

fn small(w: u32, h: u32) -> Result<(), String> {
    if u64::from(w) * u64::from(h) > 1 << 20 {
        Err(format!("{w} x {h} too large"))
    } else {
        Ok(())
    }
}

fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend(((body.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}

/// SOI + SOF0 (8-bit, `w` x `h`, the given (id, sampling, table) components).
fn sof(w: u16, h: u16, comps: &[(u8, u8, u8)]) -> Vec<u8> {
    let mut b = vec![8];
    b.extend(h.to_be_bytes());
    b.extend(w.to_be_bytes());
    b.push(comps.len() as u8);
    for &(id, hv, tq) in comps {
        b.extend([id, hv, tq]);
    }
    segment(0xC0, &b)
}

fn soi() -> Vec<u8> {
    vec![0xFF, 0xD8]
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn invalid(data: &[u8]) -> String {
    match decode_rgb(data, small) {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn huge_dimensions_are_refused_before_allocation() {
    let data = cat(&[soi(), sof(65535, 65535, &[(1, 0x11, 0)]), vec![0xFF, 0xD9]]);
    let mut seen = None;
    let r = decode_rgb(&data, |w, h| {
        seen = Some((w, h));
        Err("no".into())
    });
    assert_eq!(r, Err(Error::TooLarge("no".into())));
    assert_eq!(seen, Some((65535, 65535)));
    // Sampling factors 4x4 on one side and 1x1 on the others: padded planes stay bounded.
    let data = cat(&[
        soi(),
        sof(1, 60000, &[(1, 0x44, 0), (2, 0x11, 0), (3, 0x11, 0)]),
        vec![0xFF, 0xD9],
    ]);
    let r = decode_rgb(&data, |_, _| Ok(()));
    assert!(
        matches!(&r, Err(Error::Invalid(m)) if m.contains("no image data")),
        "{r:?}"
    );
}

#[test]
fn bad_headers_are_clear_errors() {
    assert!(invalid(b"").contains("SOI"));
    assert!(invalid(b"\x89PNG").contains("SOI"));
    assert!(invalid(&soi()).contains("premature end"));
    assert!(invalid(&cat(&[soi(), vec![0xFF, 0xD9]])).contains("no SOF"));
    // Marker lengths: below 2, past the end.
    assert!(invalid(&cat(&[soi(), vec![0xFF, 0xDB, 0x00, 0x01]])).contains("bad length"));
    assert!(invalid(&cat(&[soi(), vec![0xFF, 0xDB, 0x40, 0x00, 1, 2]])).contains("bad length"));
    assert!(invalid(&cat(&[soi(), vec![0xFF, 0xDB, 0x00]])).contains("truncated"));
    // Tables: a DQT cut short, a DQT with a bad number, a Huffman code space overflow, a DC
    // symbol above 15, counts past the segment.
    assert!(invalid(&cat(&[soi(), segment(0xDB, &[0x00, 1, 2, 3])])).contains("DQT"));
    assert!(invalid(&cat(&[soi(), segment(0xDB, &[0x05; 65])])).contains("DQT"));
    let mut dht = vec![0x10, 3];
    dht.extend([0u8; 15]);
    dht.extend([1, 2, 3]);
    assert!(invalid(&cat(&[soi(), segment(0xC4, &dht)])).contains("Huffman"));
    let mut dht = vec![0x00, 1];
    dht.extend([0u8; 15]);
    dht.push(16);
    assert!(invalid(&cat(&[soi(), segment(0xC4, &dht)])).contains("DC Huffman"));
    let mut dht = vec![0x00, 200];
    dht.extend([0u8; 15]);
    assert!(invalid(&cat(&[soi(), segment(0xC4, &dht)])).contains("DHT"));
    // Frames: zero width, sampling factor 0 or 5, a table number above 3, a short SOF.
    assert!(invalid(&cat(&[soi(), sof(0, 8, &[(1, 0x11, 0)])])).contains("width 0"));
    assert!(invalid(&cat(&[soi(), sof(8, 8, &[(1, 0x01, 0)])])).contains("sampling"));
    assert!(invalid(&cat(&[soi(), sof(8, 8, &[(1, 0x51, 0)])])).contains("sampling"));
    assert!(invalid(&cat(&[soi(), sof(8, 8, &[(1, 0x11, 4)])])).contains("table"));
    assert!(invalid(&cat(&[soi(), segment(0xC0, &[8, 0])])).contains("SOF"));
    // Scans: before the frame, naming an unknown component, undefined tables.
    assert!(invalid(&cat(&[soi(), segment(0xDA, &[1, 1, 0, 0, 63, 0])])).contains("before SOF"));
    let f = sof(8, 8, &[(1, 0x11, 0)]);
    assert!(invalid(&cat(&[
        soi(),
        f.clone(),
        segment(0xDA, &[1, 9, 0, 0, 63, 0])
    ]))
    .contains("unknown component"));
    assert!(invalid(&cat(&[
        soi(),
        f.clone(),
        segment(0xDA, &[1, 1, 0, 0, 63, 0])
    ]))
    .contains("undefined"));
    // An MCU of more than 10 blocks.
    let f = sof(64, 64, &[(1, 0x44, 0), (2, 0x11, 0), (3, 0x11, 0)]);
    let mut dht = vec![0x00, 1];
    dht.extend([0u8; 15]);
    dht.push(0);
    let mut aht = vec![0x10, 1];
    aht.extend([0u8; 15]);
    aht.push(0);
    let data = cat(&[
        soi(),
        segment(0xDB, &[0; 65]),
        segment(0xC4, &dht),
        segment(0xC4, &aht),
        f,
        segment(0xDA, &[3, 1, 0, 2, 0, 3, 0, 0, 63, 0]),
    ]);
    assert!(invalid(&data).contains("10 blocks"));
}

#[test]
fn other_jpeg_kinds_are_unsupported() {
    let un = |data: &[u8]| matches!(decode_rgb(data, small), Err(Error::Unsupported(_)));
    assert!(un(&fixture("pil_progressive_cut3_157x123.jpg")));
    let mut b = vec![12, 0, 8, 0, 8, 1, 1, 0x11, 0];
    assert!(un(&cat(&[soi(), segment(0xC0, &b)])));
    b[0] = 8;
    assert!(un(&cat(&[soi(), segment(0xC9, &b)])));
    assert!(un(&cat(&[soi(), segment(0xC3, &b)])));
    let cmyk = sof(
        8,
        8,
        &[(1, 0x11, 0), (2, 0x11, 0), (3, 0x11, 0), (4, 0x11, 0)],
    );
    assert!(un(&cat(&[soi(), cmyk])));
    assert!(un(&cat(&[soi(), sof(8, 8, &[(1, 0x11, 0), (2, 0x11, 0)])])));
    assert!(un(&cat(&[soi(), sof(8, 0, &[(1, 0x11, 0)])])));
    // Sampling ratios that are not integral: 3 against 2.
    let data = fixture("tf_420_q50_37x23.jpg");
    let p = data.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut odd = data.clone();
    odd[p + 11] = 0x32; // Y 3x2
    odd[p + 14] = 0x21; // Cb 2x1
    assert!(un(&odd), "{:?}", decode_rgb(&odd, small).err());
}

#[test]
fn bad_progressive_scans_are_refused() {
    let data = fixture("pil_progressive_3x5.jpg");
    decode_rgb(&data, small).unwrap();
    let sos = data.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let ns = data[sos + 4] as usize;
    let p = sos + 5 + 2 * ns; // Ss, Se, Ah/Al
    for (ss, se, ahal) in [
        (0u8, 5u8, 0x01u8),
        (1, 0, 0x00),
        (1, 64, 0x00),
        (0, 0, 0x31),
        (0, 0, 0x0E),
    ] {
        let mut d = data.clone();
        d[p] = ss;
        d[p + 1] = se;
        d[p + 2] = ahal;
        assert!(
            invalid(&d).contains("progressive scan"),
            "Ss {ss} Se {se} Ah/Al {ahal:02x}"
        );
    }
}

#[test]
fn truncated_and_corrupted_files_never_panic() {
    for name in [
        "pil_progressive_422_q60_rst2_37x23.jpg",
        "tf_420_q50_37x23.jpg",
        "pil_420_q60_rst3_157x123.jpg",
        "pil_422_q70_3x5.jpg",
        "tf_gray_q80_157x123.jpg",
    ] {
        let data = fixture(name);
        decode_rgb(&data, small).unwrap();
        for cut in 0..data.len() {
            let r = decode_rgb(&data[..cut], small);
            // The data ends before EOI: TF fails, so do we.
            assert!(matches!(r, Err(Error::Invalid(_))), "{name} cut at {cut}");
        }
        // Deterministic byte corruption.
        let mut s: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..3000 {
            let mut d = data.clone();
            for _ in 0..1 + (s >> 60) as usize % 4 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (s >> 33) as usize % d.len();
                d[i] = (s >> 13) as u8;
            }
            let _ = decode_rgb(&d, small);
        }
    }
}

#[test]
fn restart_markers_and_junk_between_segments() {
    // (Restart markers themselves are checked against TF in tf_bytes.)
    let data = fixture("tf_420_q50_37x23.jpg");
    let want = decode_rgb(&data, small).unwrap();
    // Fill bytes (0xFF) before the first marker after SOI.
    let mut d = data[..2].to_vec();
    d.extend([0xFF, 0xFF, 0xFF]);
    d.extend_from_slice(&data[2..]);
    assert_eq!(decode_rgb(&d, small).unwrap(), want);
    // Junk after EOI is ignored.
    let mut d = data.clone();
    d.extend([1, 2, 3, 0xFF, 0xD8]);
    assert_eq!(decode_rgb(&d, small).unwrap(), want);
}
