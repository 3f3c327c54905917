use dicom_core::header::Header;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let o = dicom_object::OpenFileOptions::new().open_file(&args[1]).unwrap();
    for e in o.iter().take(12) { println!("{} {:?} {:?}", e.tag(), e.vr(), e.value()); }
}
