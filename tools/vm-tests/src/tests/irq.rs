// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Interrupts, kicks (region 1, ioeventfd) and the refused mmap.

use super::*;

pub(super) fn set_irqs_loopback(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let vq: Vec<_> = (0..nvqs).map(|_| eventfd()).collect::<Result<_, _>>()?;
    let fds: Vec<i32> = vq.iter().map(|e| e.as_raw_fd()).collect();
    dev.set_vq_irqs(0, &fds).ctx("attach vq eventfds")?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg))
        .ctx("attach config eventfd")?;
    let req = eventfd()?;
    dev.set_req_irq(Some(&req)).ctx("attach request eventfd")?;
    let short = Duration::from_millis(200);
    for (i, e) in vq.iter().enumerate() {
        dev.trigger_irq(VHOST_VFIO_IRQ_VQ, i as u32, 1)
            .ctx("DATA_NONE trigger")?;
        check!(fired(e, short)?, "vq {i} eventfd did not fire");
        for (j, o) in vq.iter().enumerate() {
            check!(
                j == i || !fired(o, Duration::ZERO)?,
                "vq {j} fired for vq {i}"
            );
        }
    }
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("config trigger")?;
    check!(fired(&cfg, short)?, "config eventfd did not fire");
    dev.trigger_irq(VHOST_VFIO_IRQ_REQ, 0, 1)
        .ctx("request trigger")?;
    check!(fired(&req, short)?, "request eventfd did not fire");
    // DATA_BOOL: fire only where the bool is set.
    let bools: Vec<u8> = (0..nvqs).map(|i| u8::from(i == 1)).collect();
    dev.vfio()
        .set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_BOOL | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            VHOST_VFIO_IRQ_VQ,
            0,
            nvqs,
            &bools,
        )
        .ctx("DATA_BOOL trigger")?;
    check!(fired(&vq[1], short)?, "DATA_BOOL did not fire vq 1");
    check!(!fired(&vq[0], Duration::ZERO)?, "DATA_BOOL fired vq 0");
    // -1 detaches one vector.
    dev.set_vq_irqs(0, &[-1]).ctx("detach vq 0")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger all")?;
    check!(!fired(&vq[0], short)?, "detached vq 0 still fires");
    check!(fired(&vq[1], short)?, "vq 1 lost its eventfd");
    // Count 0 + DATA_NONE detaches all of an index.
    dev.detach_all_irqs().ctx("detach all")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger after detach")?;
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("trigger after detach")?;
    for e in vq.iter().chain([&cfg, &req]) {
        check!(!fired(e, short)?, "an eventfd fires after detach all");
    }
    Ok(())
}

pub(super) fn set_irqs_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    // Wire every vector first: a refused SET_IRQS must leave them wired.
    let vq: Vec<_> = (0..nvqs).map(|_| eventfd()).collect::<Result<_, _>>()?;
    let fds: Vec<i32> = vq.iter().map(|e| e.as_raw_fd()).collect();
    dev.set_vq_irqs(0, &fds).ctx("attach vq eventfds")?;
    let cfg = eventfd()?;
    dev.set_config_call(Some(&cfg))
        .ctx("attach config eventfd")?;
    let e = eventfd()?;
    let fd = e.as_raw_fd();
    let v = dev.vfio();
    bad_input(&dev, "SET_IRQS bad index", EINVAL, || {
        v.set_irq_eventfds(VHOST_VFIO_NUM_IRQS, 0, &[fd])
    })?;
    bad_input(&dev, "SET_IRQS start + count overflow", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, u32::MAX, 2)
    })?;
    bad_input(
        &dev,
        "SET_IRQS eventfds with start + count overflow",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, u32::MAX, &[fd, fd]),
    )?;
    bad_input(&dev, "SET_IRQS start = nvqs", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, nvqs, 1)
    })?;
    bad_input(&dev, "SET_IRQS count past nvqs", EINVAL, || {
        v.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs + 1)
    })?;
    bad_input(
        &dev,
        "SET_IRQS two vectors on the config IRQ",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_CONFIG, 0, &[fd, fd]),
    )?;
    let null = File::open("/dev/null").ctx("open /dev/null")?;
    bad_input(&dev, "SET_IRQS with a non-eventfd fd", EINVAL, || {
        v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[null.as_raw_fd()])
    })?;
    bad_input(
        &dev,
        "SET_IRQS with a good and a non-eventfd fd",
        EINVAL,
        || v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[fd, null.as_raw_fd()]),
    )?;
    // A closed fd number.
    let closed = File::open("/dev/null").ctx("open /dev/null")?.into_raw_fd();
    // SAFETY: closed was just obtained from into_raw_fd and is owned here.
    unsafe { libc::close(closed) };
    bad_input(&dev, "SET_IRQS with a closed fd", libc::EBADF, || {
        v.set_irq_eventfds(VHOST_VFIO_IRQ_VQ, 0, &[closed])
    })?;
    bad_input(&dev, "SET_IRQS with two data types", EINVAL, || {
        v.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_EVENTFD
                | vb::VFIO_IRQ_SET_DATA_BOOL
                | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
            VHOST_VFIO_IRQ_VQ,
            0,
            1,
            &fd.to_ne_bytes(),
        )
    })?;
    bad_input(&dev, "SET_IRQS MASK", EINVAL, || {
        v.set_irqs_raw(
            vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_MASK,
            VHOST_VFIO_IRQ_VQ,
            0,
            1,
            &[],
        )
    })?;
    bad_input(
        &dev,
        "SET_IRQS eventfd data shorter than count",
        EINVAL,
        || {
            v.set_irqs_raw(
                vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
                VHOST_VFIO_IRQ_VQ,
                0,
                2,
                &fd.to_ne_bytes(),
            )
        },
    )?;
    // The original wiring survived every refusal.
    let short = Duration::from_millis(200);
    dev.trigger_irq(VHOST_VFIO_IRQ_VQ, 0, nvqs)
        .ctx("trigger all")?;
    for (i, q) in vq.iter().enumerate() {
        check!(
            fired(q, short)?,
            "vq {i} eventfd lost by a refused SET_IRQS"
        );
    }
    check!(
        !fired(&e, Duration::ZERO)?,
        "a refused SET_IRQS attached an eventfd"
    );
    dev.trigger_irq(VHOST_VFIO_IRQ_CONFIG, 0, 1)
        .ctx("trigger config")?;
    check!(
        fired(&cfg, short)?,
        "config eventfd lost by a refused SET_IRQS"
    );
    Ok(())
}

pub(super) fn notify_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let p = page_size();
    let cases: Vec<(u64, Vec<u8>, &str)> = vec![
        (1, 0u16.to_ne_bytes().to_vec(), "offset 1"),
        (p / 2, 0u16.to_ne_bytes().to_vec(), "offset PAGE_SIZE/2"),
        (0, 1u16.to_ne_bytes().to_vec(), "value 1 at queue 0"),
        (p, 0u16.to_ne_bytes().to_vec(), "value 0 at queue 1"),
        (0, vec![0; 4], "4-byte write"),
        (0, vec![0; 1], "1-byte write"),
        (
            u64::from(nvqs) * p,
            (nvqs as u16).to_ne_bytes().to_vec(),
            "queue nvqs",
        ),
    ];
    for (off, val, what) in cases {
        bad_input(&dev, &format!("notify {what}"), EINVAL, || {
            dev.notify_raw(off, &val)
        })?;
    }
    let mut b = [0u8; 2];
    expect_fail(
        dev.vfio().read_at(dev.regions().notify.offset, &mut b),
        "read of the notify region",
    )?;
    // A good kick of a queue that is not started is accepted.
    dev.notify_raw(0, &0u16.to_ne_bytes()).ctx("kick queue 0")?;
    Ok(())
}

pub(super) fn ioeventfd_bad(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    let nvqs = dev.get_vqs_count().ctx("GET_VQS_COUNT")?;
    let e = eventfd()?;
    let fd = e.as_raw_fd();
    let n1 = dev.regions().notify.offset;
    let p = page_size();
    let v = dev.vfio();
    let w16 = vb::VFIO_DEVICE_IOEVENTFD_16;
    let null = File::open("/dev/null").ctx("open /dev/null")?;
    let cases: Vec<(u64, u32, u64, i32, &str)> = vec![
        (0, w16, 0, fd, "in region 0"),
        (layout_offset(2), w16, 0, fd, "in region 2"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_32, 0, fd, "of size 4"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_8, 0, fd, "of size 1"),
        (n1, vb::VFIO_DEVICE_IOEVENTFD_64, 0, fd, "of size 8"),
        (n1, 0, 0, fd, "without a size"),
        (
            n1,
            w16 | vb::VFIO_DEVICE_IOEVENTFD_32,
            0,
            fd,
            "of two sizes",
        ),
        (n1 + 2, w16, 0, fd, "at offset 2"),
        (n1 + p, w16, 0, fd, "with data != queue index"),
        (
            n1 + u64::from(nvqs) * p,
            w16,
            u64::from(nvqs),
            fd,
            "past the last queue",
        ),
        (n1, w16, 0, null.as_raw_fd(), "with a non-eventfd fd"),
    ];
    for (off, flags, data, f, what) in cases {
        bad_input(&dev, &format!("IOEVENTFD {what}"), EINVAL, || {
            v.ioeventfd_raw(off, flags, data, f)
        })?;
    }
    // Unbinding an unbound queue is a no-op (VFIO's virqfd owns the slot).
    dev.set_ioeventfd(0, None)
        .ctx("unbind of an unbound queue")?;
    // Bind, refuse a second bind, unbind.
    dev.set_ioeventfd(0, Some(&e)).ctx("bind ioeventfd")?;
    let e2 = eventfd()?;
    bad_input(&dev, "IOEVENTFD bind of a bound queue", libc::EBUSY, || {
        dev.set_ioeventfd(0, Some(&e2))
    })?;
    dev.set_ioeventfd(0, None).ctx("unbind ioeventfd")?;
    dev.set_ioeventfd(0, Some(&e2)).ctx("bind after unbind")?;
    dev.set_ioeventfd(0, None).ctx("unbind ioeventfd")?;
    Ok(())
}

pub(super) fn mmap_refused(env: &Env) -> TestResult {
    let inst = Inst::create(env)?;
    let dev = inst.open(IommuKind::Type1)?;
    bad_input_any(&dev, "mmap of region 0", || {
        dev.vfio().try_mmap(0, page_size() as usize)
    })?;
    // The sample has no doorbell page: region 1 does not offer mmap.
    let r1 = dev.region_info(VHOST_VFIO_REGION_NOTIFY).ctx("region 1")?;
    check!(
        r1.flags & vb::VFIO_REGION_INFO_FLAG_MMAP == 0,
        "region 1 claims mmap without a doorbell page"
    );
    bad_input_any(&dev, "mmap of region 1", || {
        dev.vfio().try_mmap(r1.offset, page_size() as usize)
    })?;
    Ok(())
}
