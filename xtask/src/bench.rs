pub fn run(
    _root: &std::path::Path,
    _images: &crate::Images,
    _args: &[String],
) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
