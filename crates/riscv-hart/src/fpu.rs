//! IEEE 754 arithmetic with RISC-V semantics: all five rounding modes,
//! accrued exception flags, canonical NaNs and NaN-boxing.
//!
//! Arithmetic runs on the host's SSE/FMA units with MXCSR set for the one
//! instruction (x86 and RISC-V both detect tininess after rounding, so the
//! flags agree), which is exact and fast. x86 has no round-to-nearest,
//! ties-to-max-magnitude mode, so RMM (and FMA on hosts without FMA3) goes
//! through `rustc_apfloat`, a software IEEE implementation. Comparisons,
//! min/max, classification and float-to-integer conversion are plain Rust.

use core::arch::asm;
use riscv_isa::{FmaOp, FpFormat, IntFormat};
use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

pub const FLAG_NX: u8 = 1;
pub const FLAG_UF: u8 = 2;
pub const FLAG_OF: u8 = 4;
pub const FLAG_DZ: u8 = 8;
pub const FLAG_NV: u8 = 16;

pub const RM_RTZ: u8 = 1;
pub const RM_RDN: u8 = 2;
pub const RM_RUP: u8 = 3;
pub const RM_RMM: u8 = 4;

const CANONICAL_NAN_S: u64 = 0x7fc0_0000;
const CANONICAL_NAN_D: u64 = 0x7ff8_0000_0000_0000;
const BOX: u64 = 0xffff_ffff_0000_0000;
const DEFAULT_MXCSR: u32 = 0x1f80;

/// Result bits (NaN-boxed for singles) and the exception flags raised.
pub type FpResult = (u64, u8);

/// Unboxes a single from a register: improperly boxed values read as the canonical NaN.
#[inline]
pub fn unbox_s(reg: u64) -> u32 {
    if reg & BOX == BOX {
        reg as u32
    } else {
        CANONICAL_NAN_S as u32
    }
}

#[inline]
pub fn box_s(bits: u32) -> u64 {
    BOX | bits as u64
}

/// Reads an operand of format `fmt` from a register value.
#[inline]
fn operand(fmt: FpFormat, reg: u64) -> u64 {
    match fmt {
        FpFormat::S => unbox_s(reg) as u64,
        FpFormat::D => reg,
    }
}

/// Writes a result of format `fmt` into register form.
#[inline]
fn result(fmt: FpFormat, bits: u64) -> u64 {
    match fmt {
        FpFormat::S => box_s(bits as u32),
        FpFormat::D => bits,
    }
}

struct Layout {
    sign: u64,
    exp_mask: u64,
    frac_mask: u64,
    quiet: u64,
    canonical: u64,
}

const S: Layout = Layout {
    sign: 1 << 31,
    exp_mask: 0xff << 23,
    frac_mask: (1 << 23) - 1,
    quiet: 1 << 22,
    canonical: CANONICAL_NAN_S,
};
const D: Layout = Layout {
    sign: 1 << 63,
    exp_mask: 0x7ff << 52,
    frac_mask: (1 << 52) - 1,
    quiet: 1 << 51,
    canonical: CANONICAL_NAN_D,
};

fn layout(fmt: FpFormat) -> &'static Layout {
    match fmt {
        FpFormat::S => &S,
        FpFormat::D => &D,
    }
}

impl Layout {
    fn is_nan(&self, v: u64) -> bool {
        v & self.exp_mask == self.exp_mask && v & self.frac_mask != 0
    }
    fn is_snan(&self, v: u64) -> bool {
        self.is_nan(v) && v & self.quiet == 0
    }
    fn is_inf(&self, v: u64) -> bool {
        v & self.exp_mask == self.exp_mask && v & self.frac_mask == 0
    }
    fn is_zero(&self, v: u64) -> bool {
        v & !self.sign == 0
    }
    fn negative(&self, v: u64) -> bool {
        v & self.sign != 0
    }
    /// Replaces any NaN by the canonical NaN.
    fn canonicalize(&self, v: u64) -> u64 {
        if self.is_nan(v) {
            self.canonical
        } else {
            v
        }
    }
}

/// MXCSR rounding-control bits for a (static, already resolved) RISC-V rounding mode.
fn mxcsr_for(rm: u8) -> u32 {
    let rc = match rm {
        RM_RTZ => 3,
        RM_RDN => 1,
        RM_RUP => 2,
        _ => 0,
    };
    DEFAULT_MXCSR | rc << 13
}

/// x86 MXCSR status bits to RISC-V fflags.
pub(crate) fn flags_from_mxcsr(status: u32) -> u8 {
    let mut flags = 0;
    if status & 0x01 != 0 {
        flags |= FLAG_NV;
    }
    if status & 0x04 != 0 {
        flags |= FLAG_DZ;
    }
    if status & 0x08 != 0 {
        flags |= FLAG_OF;
    }
    if status & 0x10 != 0 {
        flags |= FLAG_UF;
    }
    if status & 0x20 != 0 {
        flags |= FLAG_NX;
    }
    flags
}

fn flags_from_status(status: Status) -> u8 {
    let mut flags = 0;
    if status.contains(Status::INVALID_OP) {
        flags |= FLAG_NV;
    }
    if status.contains(Status::DIV_BY_ZERO) {
        flags |= FLAG_DZ;
    }
    if status.contains(Status::OVERFLOW) {
        flags |= FLAG_OF;
    }
    if status.contains(Status::UNDERFLOW) {
        flags |= FLAG_UF;
    }
    if status.contains(Status::INEXACT) {
        flags |= FLAG_NX;
    }
    flags
}

fn apfloat_round(rm: u8) -> Round {
    match rm {
        RM_RTZ => Round::TowardZero,
        RM_RDN => Round::TowardNegative,
        RM_RUP => Round::TowardPositive,
        RM_RMM => Round::NearestTiesToAway,
        _ => Round::NearestTiesToEven,
    }
}

/// Runs one SSE instruction `$insn dst, src` under the given MXCSR and returns (dst, mxcsr).
macro_rules! sse {
    ($insn:literal, $dst:expr, $src:expr, $mxcsr:expr, $dty:ty, $sty:ident) => {{
        let mut dst: $dty = $dst;
        let control: u32 = $mxcsr;
        let mut status: u32 = 0;
        // SAFETY: the asm only touches the named registers and the two u32
        // slots; MXCSR is restored to the Rust default before returning.
        unsafe {
            asm!(
                "ldmxcsr [{control}]",
                concat!($insn, " {dst}, {src}"),
                "stmxcsr [{status}]",
                "ldmxcsr [{default}]",
                dst = inout(xmm_reg) dst,
                src = in($sty) $src,
                control = in(reg) &control,
                status = in(reg) &mut status,
                default = in(reg) &DEFAULT_MXCSR,
                options(nostack),
            );
        }
        (dst, status)
    }};
}

/// Runs one FMA3 instruction `$insn a, b, c` (a = a*b op c) under the given MXCSR.
macro_rules! fma3 {
    ($insn:literal, $a:expr, $b:expr, $c:expr, $mxcsr:expr, $ty:ty) => {{
        let mut a: $ty = $a;
        let control: u32 = $mxcsr;
        let mut status: u32 = 0;
        // SAFETY: as for `sse!`; only called when the host has FMA3.
        unsafe {
            asm!(
                "ldmxcsr [{control}]",
                concat!($insn, " {a}, {b}, {c}"),
                "stmxcsr [{status}]",
                "ldmxcsr [{default}]",
                a = inout(xmm_reg) a,
                b = in(xmm_reg) $b,
                c = in(xmm_reg) $c,
                control = in(reg) &control,
                status = in(reg) &mut status,
                default = in(reg) &DEFAULT_MXCSR,
                options(nostack),
            );
        }
        (a, status)
    }};
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// add/sub/mul/div of two register values.
pub fn binary(op: Binary, fmt: FpFormat, a: u64, b: u64, rm: u8) -> FpResult {
    let (a, b) = (operand(fmt, a), operand(fmt, b));
    if rm == RM_RMM {
        return soft_binary(op, fmt, a, b);
    }
    let mx = mxcsr_for(rm);
    let (bits, status) = match fmt {
        FpFormat::S => {
            let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
            let (r, st) = match op {
                Binary::Add => sse!("addss", x, y, mx, f32, xmm_reg),
                Binary::Sub => sse!("subss", x, y, mx, f32, xmm_reg),
                Binary::Mul => sse!("mulss", x, y, mx, f32, xmm_reg),
                Binary::Div => sse!("divss", x, y, mx, f32, xmm_reg),
            };
            (r.to_bits() as u64, st)
        }
        FpFormat::D => {
            let (x, y) = (f64::from_bits(a), f64::from_bits(b));
            let (r, st) = match op {
                Binary::Add => sse!("addsd", x, y, mx, f64, xmm_reg),
                Binary::Sub => sse!("subsd", x, y, mx, f64, xmm_reg),
                Binary::Mul => sse!("mulsd", x, y, mx, f64, xmm_reg),
                Binary::Div => sse!("divsd", x, y, mx, f64, xmm_reg),
            };
            (r.to_bits(), st)
        }
    };
    (
        result(fmt, layout(fmt).canonicalize(bits)),
        flags_from_mxcsr(status),
    )
}

fn soft_binary(op: Binary, fmt: FpFormat, a: u64, b: u64) -> FpResult {
    fn run<F: Float>(op: Binary, a: F, b: F) -> StatusAnd<F> {
        let round = Round::NearestTiesToAway;
        match op {
            Binary::Add => a.add_r(b, round),
            Binary::Sub => a.sub_r(b, round),
            Binary::Mul => a.mul_r(b, round),
            Binary::Div => a.div_r(b, round),
        }
    }
    let (bits, status) = match fmt {
        FpFormat::S => {
            let r = run(
                op,
                Single::from_bits(a as u128),
                Single::from_bits(b as u128),
            );
            (r.value.to_bits() as u64, r.status)
        }
        FpFormat::D => {
            let r = run(
                op,
                Double::from_bits(a as u128),
                Double::from_bits(b as u128),
            );
            (r.value.to_bits() as u64, r.status)
        }
    };
    (
        result(fmt, layout(fmt).canonicalize(bits)),
        flags_from_status(status),
    )
}

/// Square root. Exact square roots never fall on a tie, so RMM rounds like RNE.
pub fn sqrt(fmt: FpFormat, a: u64, rm: u8) -> FpResult {
    let a = operand(fmt, a);
    let mx = mxcsr_for(rm);
    let (bits, status) = match fmt {
        FpFormat::S => {
            let x = f32::from_bits(a as u32);
            let (r, st) = sse!("sqrtss", x, x, mx, f32, xmm_reg);
            (r.to_bits() as u64, st)
        }
        FpFormat::D => {
            let x = f64::from_bits(a);
            let (r, st) = sse!("sqrtsd", x, x, mx, f64, xmm_reg);
            (r.to_bits(), st)
        }
    };
    (
        result(fmt, layout(fmt).canonicalize(bits)),
        flags_from_mxcsr(status),
    )
}

/// Fused multiply-add family.
pub fn fma(op: FmaOp, fmt: FpFormat, a: u64, b: u64, c: u64, rm: u8) -> FpResult {
    let (a, b, c) = (operand(fmt, a), operand(fmt, b), operand(fmt, c));
    let l = layout(fmt);
    // inf * 0 is invalid even when the addend is a quiet NaN.
    if (l.is_inf(a) && l.is_zero(b)) || (l.is_zero(a) && l.is_inf(b)) {
        return (result(fmt, l.canonical), FLAG_NV);
    }
    if rm == RM_RMM || !std::arch::is_x86_feature_detected!("fma") {
        return soft_fma(op, fmt, a, b, c, rm);
    }
    let mx = mxcsr_for(rm);
    let (bits, status) = match fmt {
        FpFormat::S => {
            let (x, y, z) = (
                f32::from_bits(a as u32),
                f32::from_bits(b as u32),
                f32::from_bits(c as u32),
            );
            let (r, st) = match op {
                FmaOp::Madd => fma3!("vfmadd213ss", x, y, z, mx, f32),
                FmaOp::Msub => fma3!("vfmsub213ss", x, y, z, mx, f32),
                FmaOp::Nmsub => fma3!("vfnmadd213ss", x, y, z, mx, f32),
                FmaOp::Nmadd => fma3!("vfnmsub213ss", x, y, z, mx, f32),
            };
            (r.to_bits() as u64, st)
        }
        FpFormat::D => {
            let (x, y, z) = (f64::from_bits(a), f64::from_bits(b), f64::from_bits(c));
            let (r, st) = match op {
                FmaOp::Madd => fma3!("vfmadd213sd", x, y, z, mx, f64),
                FmaOp::Msub => fma3!("vfmsub213sd", x, y, z, mx, f64),
                FmaOp::Nmsub => fma3!("vfnmadd213sd", x, y, z, mx, f64),
                FmaOp::Nmadd => fma3!("vfnmsub213sd", x, y, z, mx, f64),
            };
            (r.to_bits(), st)
        }
    };
    (result(fmt, l.canonicalize(bits)), flags_from_mxcsr(status))
}

fn soft_fma(op: FmaOp, fmt: FpFormat, a: u64, b: u64, c: u64, rm: u8) -> FpResult {
    fn run<F: Float>(op: FmaOp, a: F, b: F, c: F, round: Round) -> StatusAnd<F> {
        match op {
            FmaOp::Madd => a.mul_add_r(b, c, round),
            FmaOp::Msub => a.mul_add_r(b, -c, round),
            FmaOp::Nmsub => (-a).mul_add_r(b, c, round),
            FmaOp::Nmadd => (-a).mul_add_r(b, -c, round),
        }
    }
    let round = apfloat_round(rm);
    let (bits, status) = match fmt {
        FpFormat::S => {
            let r = run(
                op,
                Single::from_bits(a as u128),
                Single::from_bits(b as u128),
                Single::from_bits(c as u128),
                round,
            );
            (r.value.to_bits() as u64, r.status)
        }
        FpFormat::D => {
            let r = run(
                op,
                Double::from_bits(a as u128),
                Double::from_bits(b as u128),
                Double::from_bits(c as u128),
                round,
            );
            (r.value.to_bits() as u64, r.status)
        }
    };
    (
        result(fmt, layout(fmt).canonicalize(bits)),
        flags_from_status(status),
    )
}

/// fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber, -0 < +0).
pub fn min_max(max: bool, fmt: FpFormat, a: u64, b: u64) -> FpResult {
    let (a, b) = (operand(fmt, a), operand(fmt, b));
    let l = layout(fmt);
    let flags = if l.is_snan(a) || l.is_snan(b) {
        FLAG_NV
    } else {
        0
    };
    let bits = match (l.is_nan(a), l.is_nan(b)) {
        (true, true) => l.canonical,
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            let a_less = less(l, a, b) || (l.is_zero(a) && l.is_zero(b) && l.negative(a));
            if a_less != max {
                a
            } else {
                b
            }
        }
    };
    (result(fmt, bits), flags)
}

/// a < b for two non-NaN values of layout `l`.
fn less(l: &Layout, a: u64, b: u64) -> bool {
    if l.is_zero(a) && l.is_zero(b) {
        return false;
    }
    match (l.negative(a), l.negative(b)) {
        (true, false) => true,
        (false, true) => false,
        (false, false) => a < b,
        (true, true) => a > b,
    }
}

/// feq/flt/fle: returns 0 or 1 and the flags (feq is quiet, flt/fle signal on any NaN).
pub fn compare(cmp: riscv_isa::FpCmp, fmt: FpFormat, a: u64, b: u64) -> (u64, u8) {
    use riscv_isa::FpCmp;
    let (a, b) = (operand(fmt, a), operand(fmt, b));
    let l = layout(fmt);
    if l.is_nan(a) || l.is_nan(b) {
        let signal = cmp != FpCmp::Eq || l.is_snan(a) || l.is_snan(b);
        return (0, if signal { FLAG_NV } else { 0 });
    }
    let equal = a == b || (l.is_zero(a) && l.is_zero(b));
    let r = match cmp {
        FpCmp::Eq => equal,
        FpCmp::Lt => less(l, a, b),
        FpCmp::Le => equal || less(l, a, b),
    };
    (r as u64, 0)
}

/// fclass: a one-hot mask of the value's class.
pub fn classify(fmt: FpFormat, a: u64) -> u64 {
    let a = operand(fmt, a);
    let l = layout(fmt);
    let neg = l.negative(a);
    let exp = a & l.exp_mask;
    let frac = a & l.frac_mask;
    let bit = if l.is_inf(a) {
        if neg {
            0
        } else {
            7
        }
    } else if l.is_nan(a) {
        if l.is_snan(a) {
            8
        } else {
            9
        }
    } else if exp == 0 && frac == 0 {
        if neg {
            3
        } else {
            4
        }
    } else if exp == 0 {
        if neg {
            2
        } else {
            5
        }
    } else if neg {
        1
    } else {
        6
    };
    1 << bit
}

/// fsgnj/fsgnjn/fsgnjx.
pub fn sign_inject(op: riscv_isa::FpOp, fmt: FpFormat, a: u64, b: u64) -> u64 {
    let (a, b) = (operand(fmt, a), operand(fmt, b));
    let sign = layout(fmt).sign;
    let s = match op {
        riscv_isa::FpOp::SgnJ => b & sign,
        riscv_isa::FpOp::SgnJn => !b & sign,
        _ => (a ^ b) & sign,
    };
    result(fmt, (a & !sign) | s)
}

/// fcvt.s.d (to = S) and fcvt.d.s (to = D).
pub fn convert(to: FpFormat, a: u64, rm: u8) -> FpResult {
    match to {
        FpFormat::S => {
            if rm == RM_RMM {
                let mut loses = false;
                let r: StatusAnd<Single> =
                    Double::from_bits(a as u128).convert_r(Round::NearestTiesToAway, &mut loses);
                return (
                    box_s(S.canonicalize(r.value.to_bits() as u64) as u32),
                    flags_from_status(r.status),
                );
            }
            let (r, st) = sse!(
                "cvtsd2ss",
                0f32,
                f64::from_bits(a),
                mxcsr_for(rm),
                f32,
                xmm_reg
            );
            (
                box_s(S.canonicalize(r.to_bits() as u64) as u32),
                flags_from_mxcsr(st),
            )
        }
        FpFormat::D => {
            let x = f32::from_bits(unbox_s(a));
            let (r, st) = sse!("cvtss2sd", 0f64, x, DEFAULT_MXCSR, f64, xmm_reg);
            (D.canonicalize(r.to_bits()), flags_from_mxcsr(st))
        }
    }
}

/// fcvt.{w,wu,l,lu}.{s,d}: saturating conversion with RISC-V's invalid results.
pub fn to_int(fmt: FpFormat, int: IntFormat, a: u64, rm: u8) -> (u64, u8) {
    let a = operand(fmt, a);
    let (value, nan) = match fmt {
        FpFormat::S => (f32::from_bits(a as u32) as f64, S.is_nan(a)),
        FpFormat::D => (f64::from_bits(a), D.is_nan(a)),
    };
    // Bounds as (lowest valid, highest valid, result below, result above/NaN).
    let (lo, hi, below, above): (f64, f64, u64, u64) = match int {
        IntFormat::W => (
            -2147483648.0,
            2147483647.0,
            i32::MIN as i64 as u64,
            i32::MAX as u64,
        ),
        IntFormat::Wu => (0.0, 4294967295.0, 0, u64::MAX),
        IntFormat::L => (
            -9223372036854775808.0,
            9223372036854775807.0,
            i64::MIN as u64,
            i64::MAX as u64,
        ),
        IntFormat::Lu => (0.0, 18446744073709551615.0, 0, u64::MAX),
    };
    if nan {
        return (above, FLAG_NV);
    }
    let rounded = match rm {
        RM_RTZ => value.trunc(),
        RM_RDN => value.floor(),
        RM_RUP => value.ceil(),
        RM_RMM => value.round(),
        _ => value.round_ties_even(),
    };
    // Note: 2^63 and 2^64 are not representable as i64/u64; `hi` rounds up to
    // them as f64, so the upper check for L/LU must be `>=`.
    let too_big = match int {
        IntFormat::L | IntFormat::Lu => rounded >= hi,
        _ => rounded > hi,
    };
    if rounded < lo {
        return (below, FLAG_NV);
    }
    if too_big {
        return (above, FLAG_NV);
    }
    let flags = if rounded != value { FLAG_NX } else { 0 };
    let bits = match int {
        IntFormat::W => rounded as i32 as i64 as u64,
        IntFormat::Wu => rounded as u32 as i32 as i64 as u64,
        IntFormat::L => rounded as i64 as u64,
        IntFormat::Lu => rounded as u64,
    };
    (bits, flags)
}

/// fcvt.{s,d}.{w,wu,l,lu}.
pub fn from_int(fmt: FpFormat, int: IntFormat, x: u64, rm: u8) -> FpResult {
    let (signed, value): (bool, i128) = match int {
        IntFormat::W => (true, x as i32 as i128),
        IntFormat::Wu => (false, x as u32 as i128),
        IntFormat::L => (true, x as i64 as i128),
        IntFormat::Lu => (false, x as i128),
    };
    if rm == RM_RMM {
        let round = Round::NearestTiesToAway;
        let (bits, status) = match fmt {
            FpFormat::S => {
                let r = if signed {
                    Single::from_i128_r(value, round)
                } else {
                    Single::from_u128_r(value as u128, round)
                };
                (box_s(r.value.to_bits() as u32), r.status)
            }
            FpFormat::D => {
                let r = if signed {
                    Double::from_i128_r(value, round)
                } else {
                    Double::from_u128_r(value as u128, round)
                };
                (r.value.to_bits() as u64, r.status)
            }
        };
        return (bits, flags_from_status(status));
    }
    let mx = mxcsr_for(rm);
    // Values >= 2^63 are halved with a sticky low bit, converted, then doubled (exact).
    let (operand, doubled) = if value > i64::MAX as i128 {
        let v = value as u64;
        (((v >> 1) | (v & 1)) as i64, true)
    } else {
        (value as i64, false)
    };
    match fmt {
        FpFormat::S => {
            let (mut r, st) = sse!("cvtsi2ss", 0f32, operand, mx, f32, reg);
            if doubled {
                r *= 2.0;
            }
            (box_s(r.to_bits()), flags_from_mxcsr(st))
        }
        FpFormat::D => {
            let (mut r, st) = sse!("cvtsi2sd", 0f64, operand, mx, f64, reg);
            if doubled {
                r *= 2.0;
            }
            (r.to_bits(), flags_from_mxcsr(st))
        }
    }
}

/// fmv.x.w / fmv.x.d: raw bits, the single sign-extended (no unboxing).
pub fn move_to_int(fmt: FpFormat, reg: u64) -> u64 {
    match fmt {
        FpFormat::S => reg as u32 as i32 as i64 as u64,
        FpFormat::D => reg,
    }
}

/// fmv.w.x / fmv.d.x.
pub fn move_from_int(fmt: FpFormat, x: u64) -> u64 {
    result(fmt, x)
}
