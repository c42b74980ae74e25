pub struct MockHsm;
