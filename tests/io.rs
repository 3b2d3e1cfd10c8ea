//! Image loading across formats, resizing, writers, .npy, input expansion and pairing, and
//! decoders fed mutated bytes.

use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};
use percept::io::image::{
    decode_image_bytes, load_gray16, load_image, load_mask, load_rgb, resize_area, resize_bilinear, resize_nearest,
    save_png_gray16, save_png_gray8, save_png_rgb8,
};
use percept::io::inputs::{
    expand_input, expand_inputs, glob_match, natural_cmp, output_stem, output_stems, pair_flow_frames, pair_segment,
};
use percept::io::npy::{encode_npy_f32, parse_npy_f32, read_npy_f32, write_npy_f32};

use crate::support::{seed_data_dir, Rng};

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("percept_test_{tag}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn png_bytes(w: u32, h: u32, color: ExtendedColorType, buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(buf, w, h, color).unwrap();
    out
}

fn jpeg_bytes(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(rgb, w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Insert an APP1 Exif segment holding only an orientation tag right after the JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II\x2a\x00\x08\x00\x00\x00"); // little-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&(orientation as u32).to_le_bytes()); // value, left-justified
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn at(img: &percept::io::image::Image, c: usize, x: usize, y: usize) -> f32 {
    img.data[c * img.width * img.height + y * img.width + x]
}

#[test]
fn io_rgb_png_loads_exactly_as_chw_planes() {
    let t = TempDir::new("rgbpng");
    let (w, h) = (5usize, 3usize);
    let buf: Vec<u8> = (0..w * h * 3).map(|i| (i * 17 % 256) as u8).collect();
    let p = t.join("a.png");
    std::fs::write(&p, png_bytes(w as u32, h as u32, ExtendedColorType::Rgb8, &buf)).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.height, img.channels), (w, h, 3));
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                assert_eq!(at(&img, c, x, y), buf[(y * w + x) * 3 + c] as f32 / 255.0);
            }
        }
    }
    // A mask from a colour file is its Rec. 601 luma.
    let m = load_mask(&p).unwrap();
    assert_eq!(m.channels, 1);
    let (r, g, b) = (buf[3] as f32, buf[4] as f32, buf[5] as f32);
    assert!((m.data[1] - (0.299 * r + 0.587 * g + 0.114 * b) / 255.0).abs() < 1e-6);
}

#[test]
fn io_rgba_is_composited_over_white_and_masks_over_black() {
    let t = TempDir::new("rgba");
    // Transparent black, opaque red, half-transparent blue.
    let buf = [0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 255, 102];
    let p = t.join("a.png");
    std::fs::write(&p, png_bytes(3, 1, ExtendedColorType::Rgba8, &buf)).unwrap();
    let img = load_rgb(&p).unwrap();
    let a = 102.0 / 255.0;
    let want = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0 - a, 1.0 - a, 1.0]];
    for (x, px) in want.iter().enumerate() {
        for (c, &v) in px.iter().enumerate() {
            assert!((at(&img, c, x, 0) - v).abs() < 1e-6, "pixel {x} channel {c}");
        }
    }
    let m = load_mask(&p).unwrap();
    assert_eq!(m.data[0], 0.0, "transparent is background in a mask");
    assert!((m.data[2] - 0.114 * a).abs() < 1e-6);
}

#[test]
fn io_gray_and_gray_alpha_load_as_one_channel_or_expand() {
    let t = TempDir::new("gray");
    let p = t.join("g.png");
    std::fs::write(&p, png_bytes(2, 2, ExtendedColorType::L8, &[0, 51, 204, 255])).unwrap();
    let g = load_image(&p).unwrap();
    assert_eq!(g.channels, 1);
    assert_eq!(g.data, vec![0.0, 0.2, 0.8, 1.0]);
    let rgb = load_rgb(&p).unwrap();
    assert_eq!(rgb.channels, 3);
    assert_eq!(rgb.plane(0), g.data.as_slice());
    assert_eq!(rgb.plane(2), g.data.as_slice());
    let pa = t.join("ga.png");
    std::fs::write(&pa, png_bytes(2, 1, ExtendedColorType::La8, &[0, 0, 255, 255])).unwrap();
    assert_eq!(load_image(&pa).unwrap().data, vec![1.0, 1.0]);
    assert_eq!(load_mask(&pa).unwrap().data, vec![0.0, 1.0]);
}

#[test]
fn io_gray16_png_round_trips_and_clamps() {
    let t = TempDir::new("g16");
    let p = t.join("d.png");
    let vals = [0.0, 1.0, 0.5, 1.0 / 65535.0, 0.123456, -0.5, 2.0, f32::NAN];
    save_png_gray16(&p, 4, 2, &vals).unwrap();
    let (w, h, raw) = load_gray16(&p).unwrap();
    assert_eq!((w, h), (4, 2));
    assert_eq!(raw, vec![0, 65535, 32768, 1, 8091, 0, 65535, 0]);
    let img = load_image(&p).unwrap();
    assert_eq!(img.channels, 1);
    for (got, want) in img.data.iter().zip(&raw) {
        assert_eq!(*got, *want as f32 / 65535.0);
    }
    // An 8-bit file is not a 16-bit depth map.
    let p8 = t.join("e.png");
    save_png_gray8(&p8, 4, 2, &vals).unwrap();
    let err = load_gray16(&p8).unwrap_err().to_string();
    assert!(err.contains("e.png") && err.contains("16-bit"), "{err}");
    assert_eq!(load_image(&p8).unwrap().data[2], 128.0 / 255.0);
}

#[test]
fn io_rgb8_writer_rounds_and_leaves_no_temp_file() {
    let t = TempDir::new("rgb8");
    let p = t.join("sub/out.png");
    let chw = [0.0, 1.0, 0.5, 0.2, -1.0, 3.0];
    save_png_rgb8(&p, 2, 1, &chw).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!(img.data, vec![0.0, 1.0, 128.0 / 255.0, 51.0 / 255.0, 0.0, 1.0]);
    let names: Vec<String> = std::fs::read_dir(t.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["out.png".to_string()]);
    // A wrong length is refused and writes nothing.
    let q = t.join("sub/bad.png");
    assert!(save_png_rgb8(&q, 2, 2, &chw).is_err());
    assert_eq!(std::fs::read_dir(t.join("sub")).unwrap().count(), 1);
}

#[test]
fn io_palette_png_expands_with_transparency() {
    let t = TempDir::new("pal");
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 4, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Two);
        enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
        enc.set_trns(vec![255, 255, 255, 0]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0b00_01_10_11]).unwrap();
    }
    let p = t.join("p.png");
    std::fs::write(&p, bytes).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.channels), (4, 3));
    let want = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]];
    for (x, px) in want.iter().enumerate() {
        for (c, &v) in px.iter().enumerate() {
            assert_eq!(at(&img, c, x, 0), v, "pixel {x} channel {c}");
        }
    }
}

#[test]
fn io_exif_orientation_is_applied_to_jpeg() {
    let t = TempDir::new("exif");
    // 32x16: left half red, right half blue.
    let (w, h) = (32usize, 16usize);
    let mut rgb = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(if x < w / 2 { &[255, 0, 0] } else { &[0, 0, 255] });
        }
    }
    let plain = jpeg_bytes(w as u32, h as u32, &rgb);
    let p = t.join("plain.jpg");
    std::fs::write(&p, &plain).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.height), (32, 16));
    // Orientation 6: the stored picture must be turned 90 degrees clockwise, so its left half
    // (red) ends up on top.
    let p6 = t.join("rot.JPG");
    std::fs::write(&p6, with_exif_orientation(&plain, 6)).unwrap();
    let img = load_rgb(&p6).unwrap();
    assert_eq!((img.width, img.height), (16, 32));
    assert!(at(&img, 0, 8, 4) > 0.9 && at(&img, 2, 8, 4) < 0.1, "top should be red");
    assert!(at(&img, 0, 8, 28) < 0.1 && at(&img, 2, 8, 28) > 0.9, "bottom should be blue");
    // Orientation 3 (180 degrees): red on the right.
    std::fs::write(&p6, with_exif_orientation(&plain, 3)).unwrap();
    let img = load_rgb(&p6).unwrap();
    assert_eq!((img.width, img.height), (32, 16));
    assert!(at(&img, 0, 28, 8) > 0.9 && at(&img, 0, 4, 8) < 0.1);
}

/// A baseline JPEG with four components (Adobe CMYK, stored inverted as Photoshop writes it), one
/// flat 8x8 block per component and MCU, one MCU per entry of `blocks` laid out left to right.
/// Only DC coefficients are coded (quantiser 1, the Annex K luminance DC table, EOB for AC).
fn cmyk_jpeg(blocks: &[[u8; 4]]) -> Vec<u8> {
    let seg = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    let mut out = vec![0xFF, 0xD8];
    seg(&mut out, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1; 64]);
    seg(&mut out, 0xDB, &dqt);
    let width = 8 * blocks.len() as u16;
    let mut sof = vec![8, 0, 8];
    sof.extend_from_slice(&width.to_be_bytes());
    sof.push(4);
    for id in 1..=4 {
        sof.extend_from_slice(&[id, 0x11, 0]);
    }
    seg(&mut out, 0xC0, &sof);
    let dc_bits = [0u8, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    let mut dht = vec![0x00];
    dht.extend_from_slice(&dc_bits);
    dht.extend(0..12u8);
    seg(&mut out, 0xC4, &dht);
    let mut dht = vec![0x10, 1];
    dht.extend_from_slice(&[0; 15]);
    dht.push(0x00);
    seg(&mut out, 0xC4, &dht);
    seg(&mut out, 0xDA, &[4, 1, 0, 2, 0, 3, 0, 4, 0, 0, 63, 0]);
    // Canonical Huffman codes of the DC categories.
    let mut dc_code = [(0u32, 0u32); 12];
    let (mut code, mut sym) = (0u32, 0usize);
    for (len, &n) in dc_bits.iter().enumerate() {
        for _ in 0..n {
            dc_code[sym] = (code, len as u32 + 1);
            code += 1;
            sym += 1;
        }
        code <<= 1;
    }
    let mut bits: Vec<bool> = Vec::new();
    let mut put = |v: u32, n: u32| (0..n).rev().for_each(|i| bits.push(v >> i & 1 == 1));
    let mut pred = [0i32; 4];
    for block in blocks {
        for c in 0..4 {
            let dc = 8 * (block[c] as i32 - 128);
            let diff = dc - pred[c];
            pred[c] = dc;
            let cat = 32 - diff.unsigned_abs().leading_zeros();
            put(dc_code[cat as usize].0, dc_code[cat as usize].1);
            let mag = if diff >= 0 { diff } else { diff + (1 << cat) - 1 };
            put(mag as u32, cat);
            put(0, 1); // EOB
        }
    }
    while !bits.len().is_multiple_of(8) {
        bits.push(true);
    }
    for byte in bits.chunks(8) {
        let b = byte.iter().fold(0u8, |acc, &x| acc << 1 | x as u8);
        out.push(b);
        if b == 0xFF {
            out.push(0);
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn io_cmyk_jpeg_decodes_to_rgb() {
    let t = TempDir::new("cmyk");
    let p = t.join("c.jpg");
    // Inverted storage: (255, 0, 255, 255) is pure magenta ink, (200, 200, 200, 128) a dark grey.
    std::fs::write(&p, cmyk_jpeg(&[[255, 0, 255, 255], [200, 200, 200, 128]])).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.height, img.channels), (16, 8, 3));
    let near = |got: f32, want: f32| (got - want).abs() < 3.0 / 255.0;
    for (x, want) in [(3, [1.0, 0.0, 1.0]), (12, [200.0 * 128.0 / 255.0 / 255.0; 3])] {
        for (c, &v) in want.iter().enumerate() {
            assert!(near(at(&img, c, x, 4), v), "x {x} c {c}: {}", at(&img, c, x, 4));
        }
    }
}

#[test]
fn io_format_is_sniffed_not_taken_from_the_extension() {
    let t = TempDir::new("sniff");
    // PPM (P6) with an upper-case extension.
    let mut ppm = b"P6\n3 1\n255\n".to_vec();
    ppm.extend_from_slice(&[255, 0, 0, 0, 128, 0, 1, 2, 3]);
    let p = t.join("F.PPM");
    std::fs::write(&p, &ppm).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.height, img.channels), (3, 1, 3));
    assert_eq!(img.data, [255.0, 0.0, 1.0, 0.0, 128.0, 2.0, 0.0, 0.0, 3.0].map(|v| v / 255.0));
    // 16-bit PGM: big-endian samples over maxval 65535.
    let mut pgm = b"P5\n2 1\n65535\n".to_vec();
    pgm.extend_from_slice(&[0x12, 0x34, 0xFF, 0xFF]);
    let p = t.join("g.pgm");
    std::fs::write(&p, &pgm).unwrap();
    assert_eq!(load_image(&p).unwrap().data, vec![0x1234 as f32 / 65535.0, 1.0]);
    // PNG content behind a .jpg name, and a file with no extension.
    let png = png_bytes(1, 1, ExtendedColorType::Rgb8, &[9, 8, 7]);
    for name in ["x.jpg", "noext", "U.PNG"] {
        let p = t.join(name);
        std::fs::write(&p, &png).unwrap();
        assert_eq!(load_image(&p).unwrap().data, [9.0, 8.0, 7.0].map(|v| v / 255.0), "{name}");
    }
}

#[test]
fn io_load_errors_name_the_file_and_the_problem() {
    let t = TempDir::new("errs");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", vec![], "empty"),
        ("text.png", b"hello, not an image".to_vec(), "not a recognised image"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "unsupported image format"),
        ("cut.png", png_bytes(8, 8, ExtendedColorType::L8, &[7; 64])[..40].to_vec(), "corrupt"),
        ("zero.ppm", b"P6\n0 4\n255\n".to_vec(), "zero.ppm"),
    ];
    for (name, bytes, needle) in cases {
        let p = t.join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = load_image(&p).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
        assert!(err.to_lowercase().contains(needle), "{name}: {err}");
    }
    let err = load_image(&t.join("missing.png")).unwrap_err().to_string();
    assert!(err.contains("missing.png"), "{err}");
}

#[test]
fn io_resize_keeps_constant_images_constant() {
    for &(w, h, ow, oh) in &[(7, 5, 3, 2), (3, 2, 7, 5), (10, 10, 10, 10), (13, 4, 5, 9), (1, 1, 4, 3)] {
        let data = vec![0.37f32; 2 * w * h];
        for (name, out) in [
            ("area", resize_area(&data, w, h, ow, oh).unwrap()),
            ("bilinear", resize_bilinear(&data, w, h, ow, oh).unwrap()),
            ("nearest", resize_nearest(&data, w, h, ow, oh).unwrap()),
        ] {
            assert_eq!(out.len(), 2 * ow * oh, "{name}");
            assert!(out.iter().all(|v| (v - 0.37).abs() < 1e-6), "{name} {w}x{h}->{ow}x{oh}");
        }
    }
}

#[test]
fn io_resize_area_integer_factor_is_block_mean() {
    let (w, h, fx, fy) = (12usize, 8usize, 3usize, 4usize);
    let data = Rng(7).vec(2 * w * h);
    let (ow, oh) = (w / fx, h / fy);
    let out = resize_area(&data, w, h, ow, oh).unwrap();
    for c in 0..2 {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0f64;
                for y in oy * fy..(oy + 1) * fy {
                    for x in ox * fx..(ox + 1) * fx {
                        sum += data[c * w * h + y * w + x] as f64;
                    }
                }
                let want = sum / (fx * fy) as f64;
                let got = out[c * ow * oh + oy * ow + ox] as f64;
                assert!((got - want).abs() < 1e-6, "c{c} ({ox},{oy}): {got} vs {want}");
            }
        }
    }
    // Non-integer factor 3 -> 2: each output covers 1.5 inputs.
    let out = resize_area(&[0.0, 10.0, 20.0], 3, 1, 2, 1).unwrap();
    assert!((out[0] - 5.0 / 1.5).abs() < 1e-5 && (out[1] - 25.0 / 1.5).abs() < 1e-5, "{out:?}");
}

#[test]
fn io_resize_bilinear_matches_hand_computed_values() {
    // F.interpolate(arange(4).view(1,1,2,2), size=4, mode="bilinear", align_corners=False).
    let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4).unwrap();
    let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
    for (g, w) in out.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{out:?}");
    }
    // Shrinking without antialiasing: 4 -> 2 averages neighbours; 3 -> 2 samples at 0.25, 1.75.
    assert_eq!(resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 4, 1, 2, 1).unwrap(), vec![0.5, 2.5]);
    let out = resize_bilinear(&[0.0, 10.0, 20.0], 3, 1, 2, 1).unwrap();
    assert!((out[0] - 2.5).abs() < 1e-5 && (out[1] - 17.5).abs() < 1e-5, "{out:?}");
    // The antialiased resize uses bilinear when growing.
    let x = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(resize_area(&x, 2, 2, 4, 4).unwrap(), resize_bilinear(&x, 2, 2, 4, 4).unwrap());
}

#[test]
fn io_resize_nearest_samples_pixel_centres() {
    assert_eq!(resize_nearest(&[0.0, 1.0, 2.0, 3.0], 4, 1, 2, 1).unwrap(), vec![1.0, 3.0]);
    assert_eq!(resize_nearest(&[5.0, 6.0], 2, 1, 4, 1).unwrap(), vec![5.0, 5.0, 6.0, 6.0]);
    let mut rng = Rng(3);
    let mask: Vec<f32> = (0..37 * 23).map(|_| (rng.uniform() > 0.0) as u8 as f32).collect();
    let out = resize_nearest(&mask, 37, 23, 512, 512).unwrap();
    assert!(out.iter().all(|&v| v == 0.0 || v == 1.0));
    let img = percept::io::image::Image { width: 4, height: 1, channels: 1, data: vec![0.0, 1.0, 2.0, 3.0] };
    assert_eq!(img.resized_nearest(2, 1).unwrap().data, vec![1.0, 3.0]);
    assert_eq!(img.into_rgb().to_tensor().unwrap().shape, vec![3, 1, 4]);
    assert!(resize_area(&mask, 37, 23, 0, 5).is_err());
    assert!(resize_bilinear(&mask[1..], 37, 23, 5, 5).is_err());
}

#[test]
fn io_npy_header_bytes_match_numpy() {
    let bytes = encode_npy_f32(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, -1.5]).unwrap();
    // np.save(f, np.zeros((2, 3), "<f4")) with numpy 2.4: a 128-byte header.
    let mut want = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_vec();
    want.resize(127, b' ');
    want.push(b'\n');
    assert_eq!(&bytes[..128], want.as_slice());
    assert_eq!(bytes.len(), 128 + 24);
    assert_eq!(&bytes[128 + 20..], &(-1.5f32).to_le_bytes());
    // Every header ends on a 64-byte boundary, with the newline last.
    for shape in [vec![], vec![3], vec![1, 384, 512], vec![2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]] {
        let n: usize = shape.iter().product();
        let b = encode_npy_f32(&shape, &vec![0.5; n]).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0, "{shape:?}");
        assert_eq!(b[9 + hl], b'\n');
        assert_eq!(parse_npy_f32(&b).unwrap(), (shape.clone(), vec![0.5; n]));
    }
}

#[test]
fn io_npy_round_trip_and_refusals() {
    let t = TempDir::new("npy");
    let p = t.join("d/x.npy");
    let data = Rng(1).vec(3 * 5 * 7);
    write_npy_f32(&p, &[3, 5, 7], &data).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), (vec![3, 5, 7], data.clone()));
    assert!(write_npy_f32(&t.join("bad.npy"), &[2, 2], &data).is_err());
    assert!(!t.join("bad.npy").exists());

    let good = encode_npy_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let swap = |from: &[u8], to: &[u8]| {
        let at = good.windows(from.len()).position(|w| w == from).unwrap();
        let mut b = good.clone();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    for (bytes, needle) in [
        (swap(b"<f4", b">f4"), "dtype"),
        (swap(b"False", b"True "), "fortran"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        (good[..20].to_vec(), "truncated"),
        (b"PK\x03\x04".to_vec(), "not a .npy"),
    ] {
        let err = parse_npy_f32(&bytes).unwrap_err();
        assert!(err.to_lowercase().contains(needle), "{err}");
    }
    // Version 2.0 (u32 header length) is read too.
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
    v2.extend_from_slice(&(header.len() as u32).to_le_bytes());
    v2.extend_from_slice(header.as_bytes());
    v2.extend_from_slice(&1.5f32.to_le_bytes());
    v2.extend_from_slice(&2.5f32.to_le_bytes());
    assert_eq!(parse_npy_f32(&v2).unwrap(), (vec![2], vec![1.5, 2.5]));
}

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

#[test]
fn io_inputs_expand_dirs_and_globs() {
    let t = TempDir::new("inputs");
    for n in ["f10.png", "f2.PNG", "f1.jpeg", "notes.txt", ".hidden.png", "g.ppm", "sub/f3.png"] {
        touch(&t.join(n));
    }
    let names = |v: Vec<PathBuf>| -> Vec<String> {
        v.iter().map(|p| p.strip_prefix(&t.0).unwrap().to_string_lossy().into_owned()).collect()
    };
    // Folders are walked recursively (a dataset of scene folders is one argument).
    assert_eq!(names(expand_input(&t.0).unwrap()), ["f1.jpeg", "f2.PNG", "f10.png", "g.ppm", "sub/f3.png"]);
    assert_eq!(names(expand_input(&t.join("f*")).unwrap()), ["f1.jpeg", "f2.PNG", "f10.png"]);
    assert_eq!(names(expand_input(&t.join("f?.*")).unwrap()), ["f1.jpeg", "f2.PNG"]);
    assert_eq!(names(expand_input(&t.join("[fg][!1]*")).unwrap()), ["f2.PNG", "g.ppm"]);
    // An explicit file is taken whatever its extension; arguments keep their order.
    let both = expand_inputs(&[t.join("notes.txt"), t.join("sub")]).unwrap();
    assert_eq!(names(both), ["notes.txt", "sub/f3.png"]);
    for (arg, needle) in
        [("nope.png", "no such file"), ("z*.png", "no image files match"), ("*/f3.png", "file-name part")]
    {
        let err = expand_input(&t.join(arg)).unwrap_err().to_string();
        assert!(err.contains(needle), "{arg}: {err}");
    }
}

#[test]
fn io_glob_matcher_and_natural_order() {
    assert!(glob_match("*.png", "a.png") && !glob_match("*.png", "a.pngx"));
    assert!(glob_match("a*b*c", "aXXbYYc") && !glob_match("a*b*c", "aXXbYY"));
    assert!(glob_match("fr[0-9][0-9]", "fr07") && !glob_match("fr[0-9][0-9]", "fr0a"));
    assert!(glob_match("[!a]?", "bc") && !glob_match("[^a]?", "ac"));
    assert!(glob_match("[]x]", "]") && glob_match("a[", "a["));
    assert!(glob_match("*", "") && !glob_match("?", ""));
    let mut v = vec!["img10", "img9", "img009b", "img1", "a"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, ["a", "img1", "img9", "img009b", "img10"]);
}

#[test]
fn io_output_stems_keep_same_stem_inputs_apart() {
    let t = TempDir::new("stems");
    let paths: Vec<PathBuf> =
        ["run/a/x.png", "run/b/x.png", "run/b/y.png", "run/c/z.png", "run/c/z.jpg"].iter().map(|p| t.join(p)).collect();
    let stems = output_stems(&paths);
    let s: Vec<String> = stems.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(s, ["a/x", "b/x", "y", "z.png", "z.jpg"]);
    let twice = output_stems(&[t.join("q.png"), t.join("q.png")]);
    assert_ne!(twice[0], twice[1]);
    assert_eq!(output_stem(&t.join("run/a/x.png"), &t.join("run")), PathBuf::from("a/x"));
    assert_eq!(output_stem(Path::new("/elsewhere/x.png"), &t.join("run")), PathBuf::from("x"));
}

#[test]
fn io_flow_frames_and_segment_masks_pair_up() {
    let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    let chairs = pair_flow_frames(&p(&[
        "d/00018_img2.ppm",
        "d/00006_img1.ppm",
        "d/00006_img2.ppm",
        "d/00018_img1.ppm",
        "d/00043_img1.ppm",
    ]));
    assert_eq!(
        chairs.pairs,
        vec![
            (PathBuf::from("d/00006_img1.ppm"), PathBuf::from("d/00006_img2.ppm")),
            (PathBuf::from("d/00018_img1.ppm"), PathBuf::from("d/00018_img2.ppm")),
        ]
    );
    assert_eq!(chairs.unpaired, p(&["d/00043_img1.ppm"]));
    let seq = pair_flow_frames(&p(&["f10.png", "f2.png", "f1.png"]));
    assert_eq!(seq.pairs, vec![("f1.png".into(), "f2.png".into()), ("f2.png".into(), "f10.png".into())]);
    assert_eq!(pair_flow_frames(&p(&["only.png"])).unpaired, p(&["only.png"]));

    let images = p(&["o/10000015_occlusion.png", "o/1000011_occlusion.png", "o/77_occlusion.png"]);
    let masks = p(&["m/1000011_visible_mask.png", "m/10000015_visible_mask.png", "m/5_visible_mask.png"]);
    let seg = pair_segment(&images, &masks);
    assert_eq!(
        seg.pairs,
        vec![
            ("o/10000015_occlusion.png".into(), "m/10000015_visible_mask.png".into()),
            ("o/1000011_occlusion.png".into(), "m/1000011_visible_mask.png".into()),
        ]
    );
    assert_eq!(seg.unpaired, p(&["o/77_occlusion.png", "m/5_visible_mask.png"]));
}

/// CRC-32 (IEEE), bit by bit: enough for a few thousand small chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Rewrite the CRC of every whole chunk, so a mutated PNG reaches the parser instead of being
/// stopped by its checksum.
fn fix_png_crcs(b: &mut [u8]) {
    let mut i = 8;
    while i + 12 <= b.len() {
        let n = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let Some(end) = (i + 8).checked_add(n).filter(|&e| e + 4 <= b.len()) else {
            return;
        };
        let crc = crc32(&b[i + 4..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        i = end + 4;
    }
}

/// Mutate `seed` `n` times (truncations, bit flips biased to the header, byte stomps) and run
/// `decode` on each; returns how many decoded without error. A panic fails the test.
fn mutate_and_decode(seed: &[u8], n: usize, rng: &mut Rng, decode: impl Fn(&[u8]) -> bool) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let mut b = seed.to_vec();
        let r = rng.next_u64();
        let pick = |m: usize, k: u64| (k % m.max(1) as u64) as usize;
        match i % 4 {
            0 => b.truncate(pick(b.len(), r)),
            1 => {
                for k in 0..1 + r % 4 {
                    let pos = pick(b.len().min(256), rng.next_u64());
                    b[pos] ^= 1 << ((k + r) % 8);
                }
            }
            2 => {
                for _ in 0..1 + r % 8 {
                    let pos = pick(b.len(), rng.next_u64());
                    b[pos] = rng.next_u64() as u8;
                }
            }
            _ => {
                let pos = pick(b.len().min(128), r);
                b[pos] = [0x00, 0xFF, 0x7F, 0x80][(r >> 8) as usize % 4];
                b.truncate(pos + pick(b.len() - pos, rng.next_u64()) + 1);
            }
        }
        if b.starts_with(b"\x89PNG") {
            fix_png_crcs(&mut b);
        }
        if decode(&b) {
            ok += 1;
        }
    }
    ok
}

#[test]
fn io_decoders_survive_mutated_seed_files() {
    let Some(seed) = seed_data_dir() else { return };
    let toy = seed.join("toy_data");
    let png = std::fs::read(toy.join("Pix2Gestalt_small/visible_object_mask/10000015_visible_mask.png")).unwrap();
    let ppm = std::fs::read(toy.join("FlyingChairs_small/data/00006_img1.ppm")).unwrap();
    let flo = std::fs::read(toy.join("FlyingChairs_small/data/00006_flow.flo")).unwrap();
    // No JPEG in the seed data: encode a seed picture, with an EXIF block to mutate as well.
    let occ = load_rgb(&toy.join("Pix2Gestalt_small/occlusion/10000015_occlusion.png")).unwrap();
    let n = occ.width * occ.height;
    let hwc: Vec<u8> = (0..n)
        .flat_map(|p| (0..3).map(move |c| (c, p)))
        .map(|(c, p)| (occ.data[c * n + p] * 255.0).round() as u8)
        .collect();
    let jpeg = with_exif_orientation(&jpeg_bytes(occ.width as u32, occ.height as u32, &hwc), 6);

    let image_ok = |b: &[u8]| match decode_image_bytes("mutant", b) {
        Ok(img) => {
            assert_eq!(img.data.len(), img.channels * img.width * img.height);
            assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
            true
        }
        Err(e) => {
            assert!(e.to_string().contains("mutant"), "{e}");
            false
        }
    };
    let mut rng = Rng(2024);
    for (name, bytes) in [("png", &png), ("jpeg", &jpeg), ("ppm", &ppm)] {
        assert!(image_ok(bytes), "{name} seed must decode");
        let ok = mutate_and_decode(bytes, 1000, &mut rng, image_ok);
        assert!(ok < 1000, "{name}: every mutation decoded, so nothing was really mutated");
        eprintln!("{name}: {ok}/1000 mutants decoded, the rest refused");
    }
    let flo_ok = |b: &[u8]| percept::io::flo::parse_flo(b).is_ok();
    assert!(flo_ok(&flo));
    let ok = mutate_and_decode(&flo, 1000, &mut rng, flo_ok);
    assert!(ok < 1000);
}
