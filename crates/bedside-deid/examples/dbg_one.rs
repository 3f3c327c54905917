fn main() {
    let args: Vec<String> = std::env::args().collect();
    let deid = bedside_deid::Deidentifier::new(bedside_deid::Profile::default(), bedside_deid::SiteSecret::from_bytes([11; 32])).unwrap();
    let bytes = std::fs::read(&args[1]).unwrap();
    let d = deid.deidentify_bytes(&bytes, Default::default()).unwrap();
    std::fs::write(&args[2], &d.bytes).unwrap();
}
