//! What tokens cost, as an estimate: Anthropic's list prices per million tokens, by model
//! family, as published on <https://www.anthropic.com/pricing> and checked on [`PRICES_AS_OF`].
//! Cache writes are priced at the five-minute rate. Subscriptions, batch discounts, long-context
//! rates and later price changes are not reflected; a model not in the table has no estimate.

use crate::tally::Tokens;

/// When the table was last checked against the published prices.
pub const PRICES_AS_OF: &str = "2025-11-24";

/// Dollars per million tokens: input, output, cache read, cache write (5 min).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

const fn price(input: f64, output: f64) -> Price {
    // Cache reads cost a tenth of input, five-minute cache writes 1.25 times it.
    Price {
        input,
        output,
        cache_read: input / 10.0,
        cache_write: input * 1.25,
    }
}

/// Models by name, without their date suffix. A model not listed (a later one, say) has no
/// estimate rather than a guess from a family name.
const TABLE: &[(&str, Price)] = &[
    ("claude-opus-4-5", price(5.0, 25.0)),
    ("claude-opus-4-1", price(15.0, 75.0)),
    ("claude-opus-4", price(15.0, 75.0)),
    ("claude-3-opus", price(15.0, 75.0)),
    ("claude-sonnet-4-5", price(3.0, 15.0)),
    ("claude-sonnet-4", price(3.0, 15.0)),
    ("claude-3-7-sonnet", price(3.0, 15.0)),
    ("claude-3-5-sonnet", price(3.0, 15.0)),
    ("claude-3-sonnet", price(3.0, 15.0)),
    ("claude-haiku-4-5", price(1.0, 5.0)),
    ("claude-3-5-haiku", price(0.8, 4.0)),
    ("claude-3-haiku", price(0.25, 1.25)),
];

/// The list price of `model` (`NAME` or `NAME-YYYYMMDD`), if the table knows it.
pub fn price_of(model: &str) -> Option<Price> {
    TABLE
        .iter()
        .find(|(name, _)| {
            model.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('-')
                        .is_some_and(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|(_, p)| *p)
}

/// The estimated cost in dollars of `tokens` used with `model`.
pub fn cost(model: &str, tokens: &Tokens) -> Option<f64> {
    let p = price_of(model)?;
    let per = |n: u64, dollars: f64| n as f64 * dollars / 1e6;
    Some(
        per(tokens.input_tokens, p.input)
            + per(tokens.output_tokens, p.output)
            + per(tokens.cache_read_input_tokens, p.cache_read)
            + per(tokens.cache_creation_input_tokens, p.cache_write),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_match_by_whole_name_parts() {
        assert_eq!(price_of("claude-opus-4-5-20251101").unwrap().input, 5.0);
        assert_eq!(price_of("claude-opus-4-1-20250805").unwrap().input, 15.0);
        assert_eq!(price_of("claude-opus-4-20250514").unwrap().output, 75.0);
        assert_eq!(price_of("claude-sonnet-4-5-20250929").unwrap().input, 3.0);
        assert_eq!(price_of("claude-haiku-4-5-20251001").unwrap().output, 5.0);
        assert_eq!(price_of("claude-sonnet-4").unwrap().input, 3.0);
        // Models after the table's date have no estimate, not their family's old price.
        assert_eq!(price_of("claude-opus-4-7"), None);
        assert_eq!(price_of("claude-opus-4-50"), None);
        assert_eq!(price_of("<synthetic>"), None);
        assert_eq!(price_of("gpt-4o"), None);
    }

    #[test]
    fn cost_sums_the_four_rates() {
        let t = Tokens {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
            cache_creation_input_tokens: 1_000_000,
        };
        let c = cost("claude-sonnet-4-20250514", &t).unwrap();
        assert!((c - (3.0 + 15.0 + 0.3 + 3.75)).abs() < 1e-9, "{c}");
    }
}
